# Nightly retrain of the forecaster's model: train on the latest trace, then promote the candidate into the
# registry only if it beats the serving model on the same trace (the promote step refuses otherwise). The
# forecaster picks a promoted model up from model_dir by itself.
#
#   nomad job run -var repo_dir=/opt/nomad-chain -var trace=/data/spot-trace.csv jobs/forecaster-retrain.nomad.hcl

variable "repo_dir" {
  type    = string
  default = "/opt/nomad-chain"
}

variable "trace" {
  description = "Spot/preemption trace the model learns from."
  type        = string
  default     = "/var/lib/nomad-chain/traces/latest.csv"
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
          npm run --silent forecast -- train --trace "${var.trace}" --out "$NOMAD_ALLOC_DIR/candidate"
          npm run --silent forecast -- promote --registry "${var.registry}" --candidate "$NOMAD_ALLOC_DIR/candidate" --trace "${var.trace}"
        EOT
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
