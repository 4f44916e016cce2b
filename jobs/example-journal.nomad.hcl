# A stateful service run by the `chain` driver that keeps its state on disk as well as in memory: a journal
# writer holding alloc/data/journal.log open, appending one numbered line every 50 ms; the number lives only
# in memory. When its node drains, nomad-chain moves the process and the allocation's files together, so
# the file keeps every line and the numbering continues without a gap or a repeat; a restart would begin
# again at 1.
#
#   nomad job run jobs/example-journal.nomad.hcl
#   curl http://<node>:18081/                       -> {"seq": N, "started": T, "pid": P}
#   nomad alloc fs <alloc> alloc/data/journal.log   -> "1 T", "2 T", ... one line per 50 ms

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "port" {
  description = "Static, because a restored process keeps its listening socket and so its port."
  type        = number
  default     = 18081
}

variable "migrate_disk" {
  description = "Nomad's own ephemeral_disk migrate (implies sticky): Nomad also copies alloc/data and local/ to the replacement before its task starts."
  type        = bool
  default     = false
}

job "example-journal" {
  type        = "service"
  datacenters = var.datacenters

  # Drain pacing by task state: no service check is needed for a single journal writer.
  migrate {
    max_parallel     = 1
    health_check     = "task_states"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
  }

  group "journal" {
    count = 1

    ephemeral_disk {
      size    = 150
      migrate = var.migrate_disk
    }

    network {
      port "http" {
        static = var.port
      }
    }

    task "journal" {
      driver = "chain"

      config {
        command         = "/usr/bin/python3"
        args            = ["/local/journal.py", "${NOMAD_PORT_http}"]
        checkpoint_wait = "30s"
        migration_mode  = "auto"
      }

      template {
        destination = "local/journal.py"
        data        = <<-EOT
          import json, os, select, sys, time
          from http.server import BaseHTTPRequestHandler, HTTPServer

          # The sequence number is in memory only; the file stays open for the life of the process and every
          # line goes straight to the kernel (no Python buffer), so the file and the number agree at any instant.
          path = os.path.join(os.environ.get("NOMAD_ALLOC_DIR", "/alloc"), "data", "journal.log")
          fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
          started = time.time()
          seq = 0

          class Handler(BaseHTTPRequestHandler):
              def do_GET(self):
                  body = b"ok" if self.path == "/health" else json.dumps(
                      {"seq": seq, "started": started, "pid": os.getpid(), "path": path}).encode()
                  self.send_response(200)
                  self.send_header("Content-Length", str(len(body)))
                  self.end_headers()
                  self.wfile.write(body)

              def log_message(self, *args):
                  pass

          server = HTTPServer(("0.0.0.0", int(sys.argv[1])), Handler)
          print("journal", path, "listening on", sys.argv[1], flush=True)
          due = time.monotonic()
          while True:
              wait = max(0.0, due - time.monotonic())
              if select.select([server], [], [], wait)[0]:
                  server.handle_request()
              if time.monotonic() >= due:
                  seq += 1
                  os.write(fd, b"%d %.6f\n" % (seq, started))
                  due += 0.05
        EOT
      }

      kill_timeout = "10s"

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
