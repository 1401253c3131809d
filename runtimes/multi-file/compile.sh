# Judge0's "Multi-file program": the unpacked additional_files hold the scripts.
if [ -f compile ]; then exec bash ./compile; fi
