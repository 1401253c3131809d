// Runs the unmodified npm piston-client against a cutor server and prints what it got, as
// one JSON line: {"runtimes": [...], "python": {...}, "c_error": {...}}.
// Usage: node piston_client_check.mjs http://127.0.0.1:PORT
import piston from "piston-client";

const client = piston({ server: process.argv[2] });
const runtimes = await client.runtimes();
const python = await client.execute("python", "import sys\nprint(input()[::-1], sys.argv[1:])",
                                    { stdin: "olleh" });
const c_error = await client.execute("c", "int main() { return 0 }");
console.log(JSON.stringify({ runtimes, python, c_error }));
