package httpapi

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"
)

func TestDecodeStrictRejectsUnknownAndMisspeltFields(t *testing.T) {
	var req nomad.NodeUpdateDrainRequest
	if err := DecodeStrict([]byte(`{"NodeID":"x","DrainSpec":{"Deadline":1,"IgnoreSystemJobs":true},"MarkEligible":false}`), &req); err != nil {
		t.Fatalf("well-formed request refused: %v", err)
	}
	if req.DrainSpec.Deadline != 1 {
		t.Fatalf("Deadline = %d, want 1", req.DrainSpec.Deadline)
	}
	cases := map[string]string{
		"unknown field":       `{"NodeID":"x","Force":true}`,
		"nested unknown":      `{"NodeID":"x","DrainSpec":{"DeadlineMs":1}}`,
		"case only":           `{"NodeId":"x"}`,
		"nested case only":    `{"NodeID":"x","DrainSpec":{"deadline":1}}`,
		"string for duration": `{"NodeID":"x","DrainSpec":{"Deadline":"1h"}}`,
		"trailing data":       `{"NodeID":"x"} {}`,
	}
	for name, body := range cases {
		var r nomad.NodeUpdateDrainRequest
		if err := DecodeStrict([]byte(body), &r); err == nil {
			t.Errorf("%s: %s accepted", name, body)
		}
	}
}

// The stand-ins must accept what HashiCorp's own Go clients send, or they would judge the TypeScript
// clients against something other than Nomad's and Consul's contract.
func TestStandInsAcceptHashiCorpClients(t *testing.T) {
	rec := &Recorder{}
	nomadSrv := httptest.NewServer(NewNomadStandIn(rec).Handler())
	defer nomadSrv.Close()
	consulSrv := httptest.NewServer(NewConsulStandIn(rec).Handler())
	defer consulSrv.Close()

	nc, err := nomad.NewClient(&nomad.Config{Address: nomadSrv.URL, SecretID: NomadAuth})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Nodes().UpdateDrainOpts(NodeA, &nomad.DrainOptions{DrainSpec: &nomad.DrainSpec{Deadline: time.Hour, IgnoreSystemJobs: true}, Meta: map[string]string{"by": "test"}}, nil); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if _, err := nc.Nodes().ToggleEligibility(NodeB, false, nil); err != nil {
		t.Fatalf("eligibility: %v", err)
	}
	alloc, _, err := nc.Allocations().Info(NewAlloc, nil)
	if err != nil || alloc.PreviousAllocation != OldAlloc {
		t.Fatalf("alloc info: %v %+v", err, alloc)
	}
	if _, _, err := nc.Jobs().Register(fixtureJob(), nil); err != nil {
		t.Fatalf("register: %v", err)
	}
	if _, err := nc.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: NodeA, Meta: map[string]*string{"a": pointer("1")}}, nil); err != nil {
		t.Fatalf("node meta: %v", err)
	}
	sched, _, err := nc.Operator().SchedulerGetConfiguration(nil)
	if err != nil || sched.SchedulerConfig == nil || !sched.SchedulerConfig.PreemptionConfig.ServiceSchedulerEnabled {
		t.Fatalf("scheduler configuration: %v %+v", err, sched)
	}
	if set, _, err := nc.Operator().SchedulerCASConfiguration(sched.SchedulerConfig, nil); err != nil || !set.Updated {
		t.Fatalf("scheduler configuration CAS: %v %+v", err, set)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := nc.EventStream().Stream(ctx, map[nomad.Topic][]string{nomad.TopicNode: {"*"}}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for ev := range events {
		if ev.Err != nil {
			t.Fatalf("event stream: %v", ev.Err)
		}
		if ev.IsHeartbeat() {
			continue
		}
		if got == 0 {
			node, err := ev.Events[0].Node()
			if err != nil || node.ID != NodeA {
				t.Fatalf("node payload: %v %+v", err, node)
			}
		}
		if got++; got == 2 {
			break
		}
	}

	cc, err := consul.NewClient(&consul.Config{Address: strings.TrimPrefix(consulSrv.URL, "http://"), Token: ConsulAuth})
	if err != nil {
		t.Fatal(err)
	}
	reg := &consul.AgentServiceRegistration{ID: "c1", Name: "counter", Port: 8080, Address: "127.0.0.1", Meta: map[string]string{"k": "v"}, Check: &consul.AgentServiceCheck{TTL: "10s", Status: consul.HealthPassing}}
	if err := cc.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	services, err := cc.Agent().ServicesWithFilter(`ID contains "c1"`)
	if err != nil || len(services) != 1 || services["c1"].Service != "counter" || services["c1"].Meta["k"] != "v" {
		t.Fatalf("agent services: %v %+v", err, services)
	}
	checks, err := cc.Agent().ChecksWithFilter(`ServiceID == "c1"`)
	if err != nil || len(checks) != 1 || checks["service:c1"].Status != consul.HealthPassing {
		t.Fatalf("agent checks: %v %+v", err, checks)
	}
	if err := cc.Agent().ServiceDeregister("c1"); err != nil {
		t.Fatalf("deregister: %v", err)
	}
	if services, err = cc.Agent().ServicesWithFilter(`ID contains "c1"`); err != nil || len(services) != 0 {
		t.Fatalf("agent services after deregister: %v %+v", err, services)
	}

	if failures, _ := rec.Snapshot(); len(failures) != 0 {
		t.Fatalf("HashiCorp's own clients tripped the stand-ins: %+v", failures)
	}
}
