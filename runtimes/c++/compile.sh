g++ -O2 -std=c++17 -o main main.cpp
