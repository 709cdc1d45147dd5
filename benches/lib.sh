# Sourced by the bench scripts for what several of them share. Expects $work (the bench's
# scratch dir) and a cleanup trap that kills $nginx_pid when it is set.

# median VALUES...: the median of integers (the mean of the middle two for an even count).
# Values may also come as one space-separated word, as the scripts keep them per size.
median() {
  # shellcheck disable=SC2048,SC2086  # word splitting is how a space-separated list arrives
  printf '%s\n' $* | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'
}

# serve_static ROOT [LOG_FORMAT [HTTP_DIRECTIVES]]: serves ROOT with nginx on a free loopback
# port (config and logs under $work/ng, access log in LOG_FORMAT, default combined), sets
# $port and $nginx_pid, and returns once ROOT/manifest.json is served.
serve_static() {
  local root=$1 format=${2:-combined} extra=${3:-}
  mkdir -p "$work/ng/logs"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$work/ng/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $work/ng/nginx.pid;
error_log $work/ng/logs/error.log;
events { worker_connections 64; }
http {
  $extra
  access_log $work/ng/logs/access.log $format;
  client_body_temp_path $work/ng/cb; proxy_temp_path $work/ng/px; fastcgi_temp_path $work/ng/fc;
  uwsgi_temp_path $work/ng/uw; scgi_temp_path $work/ng/sc;
  server { listen 127.0.0.1:$port; root $root; }
}
NGINX
  nginx -c "$work/ng/nginx.conf" -p "$work/ng" -e "$work/ng/logs/error.log" &
  nginx_pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/manifest.json" >/dev/null && break; sleep 0.05; done
}
