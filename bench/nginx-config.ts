/**
 * nginx configurations for the benchmark, written into a temp directory and run as non-daemon children
 * (`nginx -p DIR -c DIR/nginx.conf -e DIR/error.log`): the backend every target forwards to, and the
 * reverse proxy that does what Gatehouse does (TLS, mTLS with a subject check, X-Forwarded-*, keep-alive
 * to the upstream, an access log line per request).
 */
import { join } from 'node:path';

export interface BackendConfig {
  readonly dir: string;
  readonly port: number;
  readonly workers: number;
}

/** Common top: no daemon, files under `dir`, unprivileged workers when started as root. */
function head(dir: string, workers: number): string {
  const user = process.getuid?.() === 0 ? 'user nobody nogroup;\n' : '';
  return `${user}daemon off;
master_process on;
worker_processes ${workers};
worker_rlimit_nofile 65536;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 16384; }
`;
}

function temps(dir: string): string {
  return ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${join(dir, `${t}-temp`)};`)
    .join('\n');
}

/** The backend: `200 ok` from memory on plain HTTP, no log, keep-alive connections never recycled. */
export function backendConfig(c: BackendConfig): string {
  return `${head(c.dir, c.workers)}http {
${temps(c.dir)}
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:${c.port} backlog=4096;
    location / {
      default_type text/plain;
      return 200 "ok";
    }
    # what a proxy sent, for the equivalence check before the runs
    location = /headers {
      default_type text/plain;
      return 200 "host=$host xff=$http_x_forwarded_for proto=$http_x_forwarded_proto xfh=$http_x_forwarded_host rid=$http_x_request_id device=$http_x_gatehouse_device connection=$http_connection version=$server_protocol";
    }
    # the identity Gatehouse sent for a signed-in session (case 3), and the cookies it let through
    location = /identity {
      default_type text/plain;
      return 200 "user=$http_x_gatehouse_user roles=$http_x_gatehouse_roles cookie=$http_cookie jwt=$http_x_gatehouse_jwt_assertion";
    }
  }
}
`;
}

export interface ProxyConfig {
  readonly dir: string;
  readonly port: number;
  readonly backendPort: number;
  readonly workers: number;
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string;
  /** host served without a client certificate */
  readonly openHost: string;
  /** host that needs a client certificate whose subject has OU=`subjectOu` */
  readonly mtlsHost: string;
  readonly subjectOu: string;
  readonly accessLog: boolean;
}

/**
 * The reverse proxy. One TLS listener like Gatehouse's; the server block is chosen by SNI and the mTLS one
 * sets `ssl_verify_client on` (nginx applies a name-based server's verify mode after SNI). Headers match
 * what Gatehouse sends upstream for an untrusted client: Host = the upstream's authority, X-Forwarded-For =
 * the peer address, X-Forwarded-Proto = https, X-Forwarded-Host = the client's Host, X-Request-Id.
 */
export function proxyConfig(c: ProxyConfig): string {
  const upstreamHost = `127.0.0.1:${c.backendPort}`;
  const location = (extra: string) => `    location / {
${extra}      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${upstreamHost};
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header Forwarded "";
      proxy_set_header X-Real-IP "";
    }`;
  // one JSON line per request with about the fields Gatehouse's access log has, buffered like Gatehouse's
  // (which batches lines and writes them once per event-loop turn)
  const log = c.accessLog
    ? `  log_format gatehouse escape=json '{"time":"$time_iso8601","event":"request","id":"$request_id","host":"$host",'
    '"method":"$request_method","path":"$uri","subject":"$ssl_client_s_dn","status":$status,'
    '"bytesIn":$request_length,"bytesOut":$bytes_sent,"upstreamMs":"$upstream_response_time","totalMs":"$request_time"}';
  access_log ${join(c.dir, 'access.log')} gatehouse buffer=64k flush=1s;`
    : '  access_log off;';
  return `${head(c.dir, c.workers)}http {
${temps(c.dir)}
${log}
  keepalive_requests 10000000;
  keepalive_timeout 65s;
  ssl_certificate ${c.cert};
  ssl_certificate_key ${c.key};
  ssl_protocols TLSv1.2 TLSv1.3;
  upstream backend {
    server ${upstreamHost};
    keepalive 64;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
  }
  map $ssl_client_s_dn $subject_ok {
    default 0;
    "~(^|,)OU=${c.subjectOu}(,|$)" 1;
  }
  server {
    listen 127.0.0.1:${c.port} ssl backlog=4096 default_server;
    server_name ${c.openHost};
${location('')}
  }
  server {
    listen 127.0.0.1:${c.port} ssl;
    server_name ${c.mtlsHost};
    ssl_client_certificate ${c.clientCa};
    ssl_verify_client on;
    ssl_verify_depth 2;
${location('      if ($subject_ok = 0) { return 403; }\n      proxy_set_header X-Gatehouse-Device $ssl_client_serial;\n')}
  }
}
`;
}
