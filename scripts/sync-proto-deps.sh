#!/usr/bin/env bash
# Copies the third-party .proto files that kontakt's API imports into
# third_party/proto. The Buf Schema Registry is not reachable from every
# build machine, so the imports come from pinned Go modules instead:
#   google/api/{annotations,http}.proto  from grpc-gateway v1.16.0
#   google/rpc/{status,code,error_details}.proto  from the npm package
#     google-proto-files 6.0.1 (grpc-gateway v1.16.0's copy predates
#     ErrorInfo). No API proto imports them: they are here so that a
#     client generated from these protos, a TypeScript UI's say, can
#     decode the error details kontakt answers with (docs/api.md).
#   buf/validate/validate.proto          from protovalidate v1.2.2
# The copies are committed; run this only to change a pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."

gateway=github.com/grpc-ecosystem/grpc-gateway@v1.16.0
validate=github.com/bufbuild/protovalidate@v1.2.2

dir_of() { (cd pkg && go mod download -json "$1" | awk -F'"' '/"Dir"/{print $4}'); }
gw=$(dir_of "$gateway")
pv=$(dir_of "$validate")

out=third_party/proto
rm -rf "$out"
mkdir -p "$out/google/api" "$out/google/rpc" "$out/buf/validate"
install -m 0644 "$gw/third_party/googleapis/google/api/annotations.proto" "$out/google/api/"
install -m 0644 "$gw/third_party/googleapis/google/api/http.proto" "$out/google/api/"
protofiles=google-proto-files@6.0.1
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT
(cd "$pack" && npm pack --silent "$protofiles" >/dev/null && tar xzf google-proto-files-*.tgz)
for f in status code error_details; do
  install -m 0644 "$pack/package/google/rpc/$f.proto" "$out/google/rpc/"
done
install -m 0644 "$gw/third_party/googleapis/LICENSE" "$out/google/LICENSE"
install -m 0644 "$pv/proto/protovalidate/buf/validate/validate.proto" "$out/buf/validate/"
install -m 0644 "$pv/LICENSE" "$out/buf/LICENSE"
echo "third_party/proto synced from $gateway, $validate and $protofiles"
