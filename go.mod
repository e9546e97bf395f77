module github.com/ohms-project/adaptq

go 1.26
