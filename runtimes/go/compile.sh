export GOCACHE="$PWD/.gocache" GOPATH="$PWD/.gopath"
go build -o main main.go
