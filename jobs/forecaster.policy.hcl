# ACL policy of the forecaster's Nomad token (jobs/forecaster.nomad.hcl), the least it needs:
#   node write     fence and unfence (eligibility), drain, the reason in dynamic node meta; the node list
#                  and the Node event stream need node read, which write includes
#   submit-job     register and purge the placeholder jobs that reserve capacity
#   read-job       the chained allocations on a fenced node, where a placeholder landed
#   operator read  the scheduler configuration: placeholders are placed only while service-job preemption is
#                  on (without it the forecaster says so and places none)
# Placeholders run in the chained jobs' namespace: list each namespace that runs chained tasks.
#
#   nomad acl policy apply -description "nomad-chain forecaster" forecaster jobs/forecaster.policy.hcl
#   nomad acl token create -name forecaster -policy forecaster

namespace "default" {
  capabilities = ["submit-job", "read-job"]
}

node {
  policy = "write"
}

operator {
  policy = "read"
}
