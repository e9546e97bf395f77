# adaptq: the two entry points are `make test` (the whole suite, installing
# what it needs) and `make run` (the main job on the embedded default).
.PHONY: test run bench tools build

test:
	bash scripts/test.sh

run:
	go run ./cmd/adaptq quantize --model testdata/models/stories260k --out ./out --recipe q4_k_m --text testdata/text/tinystories-valid-sample.txt

build:
	go build -o adaptq ./cmd/adaptq

tools:
	bash scripts/tools.sh

# Benchmarks of the hot loops on one core (MB/s); see README "Measured".
bench: tools
	go test -run '^$$' -bench . -benchtime 3x -cpu 1 ./safetensors ./model ./hadamard ./rotate
