# Nomad server agent for a nomad-chain cluster (one shown; run three in production).
#
#   nomad agent -config=hcl/server.hcl

datacenter = "dc1"
data_dir   = "/var/lib/nomad-server"

server {
  enabled          = true
  bootstrap_expect = 1

  default_scheduler_config {
    # The forecaster reserves room for chained tasks with low-priority placeholder service jobs; the
    # replacements of a drain take that room only if service jobs may preempt.
    preemption_config {
      service_scheduler_enabled = true
      batch_scheduler_enabled   = false
      system_scheduler_enabled  = true
    }
  }
}

consul {
  address = "127.0.0.1:8500"
}
