#!/bin/bash
# Boot script for a {{ stack }} instance running the {{ service }} service.
# Rendered by `stack up`: each double-brace placeholder is filled from the stack file.
set -euo pipefail
exec > >(tee -a /var/log/stack-userdata.log) 2>&1
echo "stack userdata: {{ stack }}/{{ service }} starting at $(date -Is)"

mkdir -p /etc/stack-app
cat > /etc/stack-app/env <<ENV
APP_TABLE={{ table }}
APP_BUCKET={{ bucket }}
APP_REGION={{ region }}
APP_PORT={{ port }}
APP_ENDPOINT_URL={{ endpoint_url }}
ENV
echo "stack userdata: done"
