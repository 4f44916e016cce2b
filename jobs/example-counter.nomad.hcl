# A stateful service run by the `chain` driver: an HTTP counter that keeps its count in memory only. When
# its node drains, nomad-chain checkpoints it and restores it on the replacement's node, so the count
# continues; any other driver would restart it at zero.
#
#   nomad job run jobs/example-counter.nomad.hcl
#   curl http://<node>:18080/        -> {"count": N}, one more per request

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "service_provider" {
  description = "consul (production, drives the Consul router) or nomad (no Consul agent, as in the real-Nomad tests)."
  type        = string
  default     = "consul"
}

variable "port" {
  description = "Static, because a restored process keeps its listening socket and so its port."
  type        = number
  default     = 18080
}

variable "migration_mode" {
  description = "How a drain moves the counter: auto, stop-and-copy, pre-copy or lazy (post-copy; under Nomad the driver moves it by stop-and-copy, and its task event says why)."
  type        = string
  default     = "auto"
}

job "example-counter" {
  type        = "service"
  datacenters = var.datacenters

  # Drain pacing: one allocation at a time, each healthy by its check before the next moves.
  migrate {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
  }

  group "counter" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    service {
      name     = "example-counter"
      port     = "http"
      provider = var.service_provider

      check {
        type     = "http"
        path     = "/health"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "counter" {
      driver = "chain"

      config {
        command         = "/usr/bin/python3"
        args            = ["/local/counter.py", "${NOMAD_PORT_http}"]
        checkpoint_wait = "30s"
        migration_mode  = var.migration_mode
      }

      template {
        destination = "local/counter.py"
        data        = <<-EOT
          import http.server, json, signal, sys

          count = 0

          # `nomad alloc signal -s SIGUSR1` prints the count, so the signal path is visible in `nomad alloc logs`.
          signal.signal(signal.SIGUSR1, lambda *_: print("SIGUSR1 count=%d" % count, flush=True))

          class Handler(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  global count
                  if self.path == "/health":
                      body = b"ok"
                  else:
                      count += 1
                      body = json.dumps({"count": count}).encode()
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
