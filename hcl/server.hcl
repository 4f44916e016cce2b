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

# ACLs on: bootstrap once (nomad acl bootstrap); nomad-chain's parts get tokens of the least policies in jobs/.
acl {
  enabled = true
}

# As on the clients (hcl/client.hcl), with the server's certificate.
tls {
  http                   = true
  rpc                    = true
  ca_file                = "/etc/nomad.d/tls/ca.crt"
  cert_file              = "/etc/nomad.d/tls/server.global.nomad.crt"
  key_file               = "/etc/nomad.d/tls/server.global.nomad.key"
  verify_server_hostname = true
  verify_https_client    = false
}

consul {
  address = "127.0.0.1:8500"
}
