# The forecaster: ingests sidecar telemetry, scores drain risk with the served ONNX model, and fences,
# reserves and drains nodes through Nomad's API. One instance per cluster.
#
# With ACLs on (as production runs), its token carries only jobs/forecaster.policy.hcl; a wrong or missing
# token stops its start with NC_NOMAD_API_ACL_DENIED:
#
#   nomad acl policy apply -description "nomad-chain forecaster" forecaster jobs/forecaster.policy.hcl
#   nomad var put nomad/jobs/forecaster \
#     token="$(nomad acl token create -name forecaster -policy forecaster -json | jq -r .SecretID)"
#   nomad job run -var repo_dir=/opt/nomad-chain jobs/forecaster.nomad.hcl
#
# With TLS on Nomad's HTTP API, make the template's NOMAD_ADDR https:// and add NOMAD_CACERT=<the agents' CA>.
#
# Pre-staging before drains: the forecaster asks the sidecars over their transfer ports (mutual TLS), so it needs
# a certificate of the sidecars' CA: scripts/gen-certs.sh <sidecar_tls_dir> forecaster, then
# -var sidecar_tls_dir=<that dir>. Left empty, the forecaster drains without pre-staging.

variable "repo_dir" {
  type    = string
  default = "/opt/nomad-chain"
}

variable "model_registry" {
  description = "The model registry forecaster-retrain promotes into; the forecaster serves its current version and follows promotions and rollbacks."
  type        = string
  default     = "/var/lib/nomad-chain/models"
}

variable "data_dir" {
  description = "Where the forecaster records what it observes (nc-trace/1), the trace forecaster-retrain learns from."
  type        = string
  default     = "/var/lib/nomad-chain/data"
}

variable "sidecar_tls_dir" {
  description = "The sidecars' ca.crt plus the forecaster's forecaster.crt and forecaster.key; empty = no pre-staging."
  type        = string
  default     = ""
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "service_provider" {
  type    = string
  default = "consul"
}

job "forecaster" {
  type        = "service"
  datacenters = var.datacenters
  priority    = 80

  group "forecaster" {
    count = 1

    network {
      port "telemetry" {
        static = 7460
      }
      port "http" {
        static = 7461
      }
    }

    service {
      name     = "chain-forecaster"
      port     = "http"
      provider = var.service_provider

      check {
        type     = "http"
        path     = "/v1/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "forecaster" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/env"
        args    = ["node", "-r", "${var.repo_dir}/scripts/register.js", "${var.repo_dir}/forecaster/src/main.ts", "--config", "${NOMAD_TASK_DIR}/forecaster.json"]
      }

      template {
        destination = "local/forecaster.json"
        data        = <<-EOT
          {"modelRegistry": "${var.model_registry}", "dataDir": "${var.data_dir}", "tick": "10s"}
        EOT
      }

      # The ACL token lives in a Nomad variable readable only by this job.
      template {
        destination = "secrets/nomad.env"
        env         = true
        data        = <<-EOT
          NOMAD_ADDR=http://{{ env "attr.unique.network.ip-address" }}:4646
          {{ with nomadVar "nomad/jobs/forecaster" }}NOMAD_TOKEN={{ .token }}{{ end }}
        EOT
      }

      env {
        NOMAD_CHAIN_FORECASTER_TELEMETRY_PORT   = "${NOMAD_PORT_telemetry}"
        NOMAD_CHAIN_FORECASTER_HTTP_PORT        = "${NOMAD_PORT_http}"
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CA   = var.sidecar_tls_dir == "" ? "" : "${var.sidecar_tls_dir}/ca.crt"
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CERT = var.sidecar_tls_dir == "" ? "" : "${var.sidecar_tls_dir}/forecaster.crt"
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_KEY  = var.sidecar_tls_dir == "" ? "" : "${var.sidecar_tls_dir}/forecaster.key"
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
