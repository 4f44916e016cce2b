# Consul client agent beside each Nomad client: Nomad registers chained services here (provider = "consul").
# On a drain Nomad deregisters the source instance itself before the driver freezes it; after the restore
# the chain plugin (its consul_address, consul_token: service:write on those services) lists the moved
# instance here as passing until Nomad's own check passes (README, Nomad mode).
#
#   consul agent -config-file=hcl/consul.hcl -retry-join=<consul server>

datacenter  = "dc1"
data_dir    = "/var/lib/consul"
client_addr = "127.0.0.1"

ports {
  grpc = 8502
}

acl {
  enabled        = true
  default_policy = "deny"
}
