#!/bin/bash
# Boot script for a {{ stack }} instance running {{ service }} without an app artifact:
# a static page served by Python's http.server, enough for the load balancer's checks.
# Idempotent: a second run rewrites the same files and leaves the service running.
set -euo pipefail
exec > >(tee -a /var/log/stack-userdata.log) 2>&1
echo "$(date -Is) stack-userdata: {{ stack }}/{{ service }} starting"

mkdir -p /srv/hello
echo "hello from {{ stack }}/{{ service }} on $(hostname)" >/srv/hello/index.html
echo ok >/srv/hello/health
cat >/etc/systemd/system/hello.service <<UNIT
[Unit]
Description=hello page ({{ stack }}/{{ service }})
After=network-online.target

[Service]
ExecStart=/usr/bin/python3 -m http.server {{ port }} --directory /srv/hello
Restart=on-failure
DynamicUser=yes

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now hello.service
echo "$(date -Is) stack-userdata: hello.service enabled"
