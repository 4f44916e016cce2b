# A chained service that clients find through Consul: Nomad registers it (provider = "consul") with an
# HTTP check, and a client routes to whatever /v1/health/service/example-consul?passing lists. On a drain
# the process moves with its memory (the hit count continues) and the listing follows it.
#
#   nomad job run jobs/example-consul.nomad.hcl
#   curl http://<consul>:8500/v1/health/service/example-consul?passing   -> the instance to call
#   curl http://<instance>/                                              -> {"hits": N, "pid": P}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "port" {
  description = "Static, because a restored process keeps its listening socket and so its port."
  type        = number
  default     = 18082
}

variable "check_interval" {
  description = "How often Consul checks the instance; after a move, the restored instance passes at its next check."
  type        = string
  default     = "1s"
}

job "example-consul" {
  type        = "service"
  datacenters = var.datacenters

  migrate {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
  }

  group "web" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    service {
      name     = "example-consul"
      port     = "http"
      provider = "consul"

      check {
        type     = "http"
        path     = "/health"
        interval = var.check_interval
        timeout  = "1s"
      }
    }

    task "web" {
      driver = "chain"

      config {
        command         = "/usr/bin/python3"
        args            = ["/local/web.py", "${NOMAD_PORT_http}"]
        checkpoint_wait = "30s"
      }

      template {
        destination = "local/web.py"
        data        = <<-EOT
          import http.server, json, os, sys

          hits = 0

          class Handler(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  global hits
                  if self.path == "/health":
                      body = b"ok"
                  else:
                      hits += 1
                      body = json.dumps({"hits": hits, "pid": os.getpid()}).encode()
                  self.send_response(200)
                  self.send_header("Content-Length", str(len(body)))
                  self.end_headers()
                  self.wfile.write(body)

              def log_message(self, *args):
                  pass

          server = http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
          print("listening on", sys.argv[1], flush=True)
          server.serve_forever()
        EOT
      }

      kill_timeout = "10s"

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
