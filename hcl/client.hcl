# Nomad client agent with the `chain` task driver. plugin_dir holds the `chain` launcher (plugin/bin/chain;
# a symlink works); the sidecar system job (jobs/chain-sidecar.nomad.hcl) must run on this node too.
#
#   nomad agent -config=hcl/client.hcl

datacenter = "dc1"
data_dir   = "/var/lib/nomad"
plugin_dir = "/opt/nomad-chain/plugin/bin"

acl {
  enabled = true
}

# TLS on HTTP and RPC, certificates named by role (scripts/gen-certs.sh DIR server.global.nomad
# client.global.nomad makes a test set; production uses the operator's PKI). HTTP callers authenticate with
# their ACL token, so they need only the CA.
tls {
  http                   = true
  rpc                    = true
  ca_file                = "/etc/nomad.d/tls/ca.crt"
  cert_file              = "/etc/nomad.d/tls/client.global.nomad.crt"
  key_file               = "/etc/nomad.d/tls/client.global.nomad.key"
  verify_server_hostname = true
  verify_https_client    = false
}

client {
  enabled = true
  servers = ["127.0.0.1:4647"]

  # Long enough for a final checkpoint: a migrating stop is a dump, not a kill.
  max_kill_timeout = "2m"
}

plugin "chain" {
  config {
    # The sidecar's local API (its NOMAD_CHAIN_LOCAL_SOCKET).
    sidecar_socket  = "/var/lib/nomad-chain/sidecar.sock"
    sidecar_timeout = "30s"

    # Where the driver reads PreviousAllocation / NextAllocation; "" turns chaining of stops off. The token
    # is one of the least policy jobs/chain-plugin.policy.hcl (ACLs on); the CA is the agents' tls ca_file.
    nomad_address = "https://127.0.0.1:4646"
    nomad_ca_file = "/etc/nomad.d/tls/ca.crt"
    nomad_token   = ""

    # How long a replacement waits for its predecessor's checkpoint before a cold start.
    checkpoint_wait    = "30s"
    migration_mode     = "auto"
    fingerprint_period = "15s"

    # The Consul agent of the consul block below: after a restore the driver lists the task there as passing
    # until Nomad's own check passes. The token needs service:write on the chained jobs' services.
    consul_address = "http://127.0.0.1:8500"
    consul_token   = ""
  }
}

# The sidecar and forecaster jobs run as host processes.
plugin "raw_exec" {
  config {
    enabled = true
  }
}

consul {
  address = "127.0.0.1:8500"
}
