#!/bin/sh
# Start the local services the test suite talks to, if they are down: Redis (the broker,
# presence and cluster tests), PostgreSQL (the store contract suite and the cluster tests)
# and NATS. Each command is the machine's documented start command; a service that is
# already up is left alone. nginx (the reverse-proxy test) and chromium (the browser
# tests) are installed from Debian's packages if missing.
set -u

port_open() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if command -v redis-server >/dev/null 2>&1 && ! port_open 6379; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || echo "services: redis did not start"
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && ! port_open 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start \
    || echo "services: postgresql did not start"
fi
if [ -x /usr/sbin/nats-server ] && ! port_open 4222; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
    || echo "services: nats did not start"
fi
# nginx, for the reverse-proxy test (tests/test_deploy.py). The package would start a
# system nginx on port 80: a temporary policy-rc.d tells it not to.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && command -v apt-get >/dev/null; then
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; fi
  (apt-get install -y -qq nginx-light >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
    apt-get install -y -qq nginx-light >/dev/null 2>&1; }) || echo "services: nginx did not install"
  [ "$made_policy" = 1 ] && rm -f "$policy"
fi
# Debian's chromium, for the browser tests (tests/browser.py drives it with Playwright;
# Playwright's own browser download does not work here).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
    apt-get install -y -qq chromium >/dev/null 2>&1; }) || echo "services: chromium did not install"
fi
exit 0
