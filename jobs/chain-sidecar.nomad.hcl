# The nomad-chain sidecar on every Nomad client: runs chained tasks (runc + CRIU), keeps their checkpoints and
# streams them to peers. A system job, so a new client gets one, and drains leave it in place (drains
# started by nomad-chain set IgnoreSystemJobs) so it can hand its tasks over.
#
#   nomad job run -var repo_dir=/opt/nomad-chain jobs/chain-sidecar.nomad.hcl
#
# It runs the built sidecar (npm run build makes dist/): from the TypeScript sources its start took 7.2-8.0 s
# here, built 0.6-0.7 s. Variables may hold the client's runtime variables (data_dir =
# "/srv/${node.unique.name}/chain"): Nomad interpolates them on each client.

variable "repo_dir" {
  description = "Where nomad-chain is checked out, built (npm run build), with node_modules, on every client."
  type        = string
  default     = "/opt/nomad-chain"
}

variable "data_dir" {
  description = "Sidecar state; its sidecar.sock must match the plugin's sidecar_socket (hcl/client.hcl)."
  type        = string
  default     = "/var/lib/nomad-chain"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "grpc_port" {
  description = "The sidecar's plain gRPC port (health); 0 = one Nomad picks per node."
  type        = number
  default     = 7450
}

variable "transfer_port" {
  description = "Port peers reach this node's State Transfer server on (mutual TLS); 0 = one Nomad picks per node."
  type        = number
  default     = 7451
}

variable "tls_dir" {
  description = "ca.crt plus <node name>.crt and .key per node (scripts/gen-certs.sh makes them); without them transfer is off."
  type        = string
  default     = "/etc/nomad-chain/tls"
}

variable "forecaster_address" {
  description = "host:port of the forecaster's telemetry port (jobs/forecaster.nomad.hcl: 7460), e.g. chain-forecaster.service.consul:7460; empty = no telemetry."
  type        = string
  default     = ""
}

variable "config_file" {
  description = "A JSON config file the sidecar reads (--config), for settings beyond the environment below (telemetry sources); empty = none."
  type        = string
  default     = ""
}

variable "log_level" {
  type    = string
  default = "info"
}

job "chain-sidecar" {
  type        = "system"
  datacenters = var.datacenters
  priority    = 90

  group "sidecar" {
    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    network {
      port "grpc" {
        static = var.grpc_port
      }
      port "transfer" {
        static = var.transfer_port
      }
    }

    task "sidecar" {
      # Root is needed for runc and CRIU; the tasks it starts outlive it (runc keeps them), so an upgrade
      # of this job does not stop chained tasks.
      driver = "raw_exec"

      config {
        command = "/usr/bin/env"
        args    = concat(["node", "${var.repo_dir}/dist/sidecar/src/main.js"], var.config_file == "" ? [] : ["--config", var.config_file])
      }

      env {
        NOMAD_CHAIN_NODE_NAME          = "${node.unique.name}"
        NOMAD_CHAIN_LISTEN_ADDRESS     = "${NOMAD_IP_grpc}"
        NOMAD_CHAIN_LISTEN_PORT        = "${NOMAD_PORT_grpc}"
        NOMAD_CHAIN_TRANSFER_PORT      = "${NOMAD_PORT_transfer}"
        NOMAD_CHAIN_ADVERTISE_ADDRESS  = "${NOMAD_ADDR_transfer}"
        NOMAD_CHAIN_TLS_CA             = "${var.tls_dir}/ca.crt"
        NOMAD_CHAIN_TLS_CERT           = "${var.tls_dir}/${node.unique.name}.crt"
        NOMAD_CHAIN_TLS_KEY            = "${var.tls_dir}/${node.unique.name}.key"
        NOMAD_CHAIN_DATA_DIR           = var.data_dir
        NOMAD_CHAIN_LOCAL_SOCKET       = "${var.data_dir}/sidecar.sock"
        NOMAD_CHAIN_FORECASTER_ADDRESS = var.forecaster_address
        NOMAD_CHAIN_LOG_LEVEL          = var.log_level
      }

      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
