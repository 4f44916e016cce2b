# ACL policy of the chain plugin's nomad_token (hcl/client.hcl), the least it needs: the driver reads an
# allocation's lineage (GET /v1/allocation/:id needs read-job in the allocation's namespace) and the
# transfer address a replacement's node publishes (GET /v1/node/:id needs node read). Nothing else.
#
#   nomad acl policy apply -description "nomad-chain plugin" chain-plugin jobs/chain-plugin.policy.hcl
#   nomad acl token create -name chain-plugin -policy chain-plugin

namespace "*" {
  capabilities = ["read-job"]
}

node {
  policy = "read"
}
