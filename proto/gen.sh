#!/usr/bin/env bash
# Regenerates the Go code for proto/ (the TF Serving subset; proto/onnx has its own line below).
# Needs: protoc (Debian: protobuf-compiler), protoc-gen-go and protoc-gen-go-grpc on PATH
#   (Debian: protoc-gen-go, protoc-gen-go-grpc; or `go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12`
#    and `go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest`).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:$(go env GOPATH)/bin"
M=github.com/infergate/infergate
files=$(find tensorflow tensorflow_serving -name '*.proto' | sort)
protoc -I . -I /usr/include \
  --go_out=.. --go_opt=module=$M \
  --go-grpc_out=.. --go-grpc_opt=module=$M \
  $files
if [ -f onnx/onnx.proto ]; then
  # from the repository root, so the registered file name stays proto/onnx/onnx.proto
  (cd .. && protoc --go_out=. --go_opt=module=$M proto/onnx/onnx.proto)
fi
