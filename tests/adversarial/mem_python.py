# A memory bomb in an interpreter: grows a list of 1 MiB byte strings (touched) forever.
chunks = []
while True:
    chunks.append(b"x" * (1 << 20))
