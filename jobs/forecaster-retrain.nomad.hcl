# Nightly retrain of the forecaster's model (`npm run forecast -- retrain`): train on the trace without its last
# hours, then promote the candidate into the registry only if it beats the serving model on those held-out
# hours. The forecaster follows the registry's current version by itself. Run it where the forecaster's
# data_dir and model_registry are (the same host, or shared storage). It calls no Nomad API, so it needs no
# ACL token or policy: with ACLs on it runs with none.
#
#   nomad job run -var repo_dir=/opt/nomad-chain -var trace=/data/spot-trace.csv jobs/forecaster-retrain.nomad.hcl

variable "repo_dir" {
  type    = string
  default = "/opt/nomad-chain"
}

variable "trace" {
  description = "Spot/preemption trace the model learns from: by default what the forecaster recorded."
  type        = string
  default     = "/var/lib/nomad-chain/data/trace/observed.ndjson"
}

variable "registry" {
  type    = string
  default = "/var/lib/nomad-chain/models"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

job "forecaster-retrain" {
  type        = "batch"
  datacenters = var.datacenters
  priority    = 30

  periodic {
    crons            = ["17 3 * * *"]
    time_zone        = "UTC"
    prohibit_overlap = true
  }

  group "retrain" {
    restart {
      attempts = 1
      mode     = "fail"
    }

    task "retrain" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args    = ["${NOMAD_TASK_DIR}/retrain.sh"]
      }

      template {
        destination = "local/retrain.sh"
        data        = <<-EOT
          set -eu
          cd "${var.repo_dir}"
          npm run --silent forecast -- retrain --trace "${var.trace}" --registry "${var.registry}"
        EOT
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
