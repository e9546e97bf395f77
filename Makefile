# adaptq: the two entry points are `make test` (the whole suite, installing
# what it needs) and `make run` (the main job on the embedded default).
.PHONY: test run bench bench-quality tools build

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

# The quality bench on the real models (not part of `make test`; tens of
# minutes per model on two cores): adaptq's files beside llama.cpp's, one
# evaluator, written to docs/QUALITY.md. Cached under .tools/bench/quality.
#   make bench-quality QUALITY="-models smollm2-135m -sets base,imatrix"
bench-quality: tools
	go run ./internal/qualitybench $(QUALITY)
