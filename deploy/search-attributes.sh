#!/usr/bin/env bash
# Registers adaptq's custom search attributes in a Temporal namespace, once
# per namespace, before the first run. The workflow sets them; the Web UI
# and `temporal workflow list --query` filter on them:
#   AdaptqModel   Keyword  the model location, e.g. s3://models/llama-3-70b
#   AdaptqRecipe  Keyword  the recipe, e.g. q4_k
#   AdaptqPhase   Keyword  plan | quantize | stitch | eval | done
#
# Usage: deploy/search-attributes.sh [namespace]   (default: $TEMPORAL_NAMESPACE or "default")
# Connection from the Temporal CLI's environment: TEMPORAL_ADDRESS, and for
# mTLS TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
# TEMPORAL_TLS_SERVER_CA_CERT_PATH (or the matching --tls-* flags).
# Re-running it is harmless: an attribute that exists with the same type is
# reported and skipped.
set -euo pipefail
ns=${1:-${TEMPORAL_NAMESPACE:-default}}

existing=$(temporal operator search-attribute list --namespace "$ns" 2>/dev/null || true)
for name in AdaptqModel AdaptqRecipe AdaptqPhase; do
  if grep -qw "$name" <<<"$existing"; then
    echo "$name: already registered in namespace $ns"
    continue
  fi
  temporal operator search-attribute create --namespace "$ns" --name "$name" --type Keyword
  echo "$name: registered (Keyword) in namespace $ns"
done
temporal operator search-attribute list --namespace "$ns"

# The same with tctl (deprecated; Temporal server before the CLI):
#   tctl --namespace "$ns" admin cluster add-search-attributes --name AdaptqModel --type Keyword
#   tctl --namespace "$ns" admin cluster add-search-attributes --name AdaptqRecipe --type Keyword
#   tctl --namespace "$ns" admin cluster add-search-attributes --name AdaptqPhase --type Keyword
#   tctl cluster get-search-attributes
