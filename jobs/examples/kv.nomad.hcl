# The example local mode runs (`npm start`), and the same job under Nomad: an in-memory key/value store and
# counter (kv-store.js) run by the `chain` driver. A drain moves it with its memory and the journal it holds
# open under /alloc/data.
#
#   npm start                                          # local mode runs this file
#   nomad job run jobs/examples/kv.nomad.hcl           # from the repository's root: file() reads from there
#   curl -X PUT --data hello http://<node>:8080/kv/greeting

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "service_provider" {
  description = "consul (production, drives the Consul router) or nomad (no Consul agent)."
  type        = string
  default     = "consul"
}

job "kv" {
  type        = "service"
  datacenters = var.datacenters

  group "kv" {
    count = 1

    network {
      # Static, because a restored process keeps its listening socket and so its port.
      port "http" {
        static = 8080
      }
    }

    service {
      name     = "kv"
      port     = "http"
      provider = var.service_provider

      check {
        type     = "tcp"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "kv" {
      driver = "chain"

      config {
        command = "/usr/bin/node"
        args    = ["/local/kv-store.js"]
        cwd     = "/local"
      }

      env {
        PORT = "${NOMAD_PORT_http}"
      }

      # A static file: no {{ }} directives, so local mode copies it in as Nomad would render it.
      template {
        data        = file("jobs/examples/kv-store.js")
        destination = "local/kv-store.js"
      }

      resources {
        memory = 256
      }
    }
  }
}
