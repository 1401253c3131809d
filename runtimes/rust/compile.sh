rustc -O -o main main.rs
