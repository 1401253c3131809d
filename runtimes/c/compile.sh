gcc -O2 -o main main.c -lm
