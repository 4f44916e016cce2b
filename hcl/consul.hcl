# Consul client agent beside each Nomad client: Nomad registers chained services here, and the sidecar's
# Consul router puts an instance in maintenance (out of /v1/health/service/NAME?passing) before it freezes.
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
