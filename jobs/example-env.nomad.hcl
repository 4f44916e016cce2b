# A service run by the `chain` driver that reports its allocation's identity from its environment on every
# request. A drain moves the process with its memory, and with it the environment block the kernel gave it
# at exec: nomad-chain rewrites the per-allocation values in the checkpoint (same length, as UUID-based ones
# are), so the restored process answers with the replacement's NOMAD_ALLOC_ID while its hit count, pid and
# start time show it is the same process.
#
#   nomad job run jobs/example-env.nomad.hcl
#   curl http://<node>:18082/   -> {"allocId": "...", "shortAllocId": "...", "hits": N, "pid": P, "started": T}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "port" {
  description = "Static, because a restored process keeps its listening socket and so its port."
  type        = number
  default     = 18082
}

job "example-env" {
  type        = "service"
  datacenters = var.datacenters

  migrate {
    max_parallel     = 1
    health_check     = "task_states"
    min_healthy_time = "5s"
    healthy_deadline = "2m"
  }

  group "env" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    task "server" {
      driver = "chain"

      config {
        command         = "/usr/bin/node"
        args            = ["/local/server.js", "${NOMAD_PORT_http}"]
        checkpoint_wait = "30s"
        migration_mode  = "auto"
      }

      template {
        destination = "local/server.js"
        data        = <<-EOT
          // process.env is read on each request: Node reads the process's environment block (getenv), the
          // memory CRIU restores, so a rewritten block shows at once.
          const http = require("http");
          const started = Date.now();
          let hits = 0;
          http
            .createServer((req, res) => {
              hits++;
              res.end(JSON.stringify({
                allocId: process.env.NOMAD_ALLOC_ID,
                shortAllocId: process.env.NOMAD_SHORT_ALLOC_ID,
                hits,
                pid: process.pid,
                started,
              }));
            })
            .listen(Number(process.argv[2]), "0.0.0.0");
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
