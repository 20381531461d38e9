#!/bin/bash
# Boot script of the golden-test stack: a static page, no artifact to install.
mkdir -p /srv/www
echo "{{ stack }}/{{ service }} (table {{ table }}, bucket {{ bucket }})" >/srv/www/index.html
cd /srv/www && exec python3 -m http.server {{ port }}
