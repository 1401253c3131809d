// Served when the build found no web/node_modules (see src/web/CMakeLists.txt).
document.body.textContent =
  "The playground was built without its npm packages: run scripts/setup.sh " +
  "(or npm install --prefix web) and rebuild.";
