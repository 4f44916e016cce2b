package httpapi

import (
	"bytes"
	"time"

	nomad "github.com/hashicorp/nomad/api"
)

func pointer[T any](v T) *T { return &v }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

var fixtureTime = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

func fixtureNode(id, name string) *nomad.Node {
	return &nomad.Node{
		ID: id, Datacenter: "dc1", Name: name, HTTPAddr: "127.0.0.1:4646",
		Attributes: map[string]string{"driver.chain": "1", "kernel.name": "linux"},
		Meta:       map[string]string{"rack": "r1"},
		NodeClass:  "", NodePool: "default",
		SchedulingEligibility: nomad.NodeSchedulingEligible, Status: nomad.NodeStatusReady,
		StatusUpdatedAt: fixtureTime.Unix(),
		Events:          []*nomad.NodeEvent{{Message: "Node registered", Subsystem: "Cluster", Timestamp: fixtureTime, CreateIndex: 5}},
		Drivers: map[string]*nomad.DriverInfo{
			"chain": {Attributes: map[string]string{"driver.chain.criu": "4.2.1"}, Detected: true, Healthy: true, HealthDescription: "Healthy", UpdateTime: fixtureTime},
		},
		CreateIndex: 5, ModifyIndex: 7,
	}
}

func stub(n *nomad.Node) *nomad.NodeListStub {
	return &nomad.NodeListStub{
		Address: "127.0.0.1", ID: n.ID, Datacenter: n.Datacenter, Name: n.Name, NodePool: n.NodePool, Version: "1.6.5",
		Drain: n.Drain, SchedulingEligibility: n.SchedulingEligibility, Status: n.Status, Drivers: n.Drivers,
		LastDrain: n.LastDrain, CreateIndex: n.CreateIndex, ModifyIndex: n.ModifyIndex,
	}
}

func fixtureTaskState(state string) *nomad.TaskState {
	return &nomad.TaskState{
		State: state, StartedAt: fixtureTime, FinishedAt: time.Time{}, LastRestart: time.Time{},
		Events: []*nomad.TaskEvent{{Type: "Started", Time: fixtureTime.UnixNano(), DisplayMessage: "Task started by client", Details: map[string]string{}}},
	}
}

func fixtureOldAlloc() *nomad.Allocation {
	return &nomad.Allocation{
		ID: OldAlloc, Namespace: "default", EvalID: "e0000000-0000-4000-8000-000000000000", Name: "example-counter.counter[0]",
		NodeID: NodeA, NodeName: "client-a", JobID: JobID, Job: fixtureJob(), TaskGroup: "counter",
		DesiredStatus: "stop", DesiredDescription: "alloc is being migrated",
		DesiredTransition: nomad.DesiredTransition{Migrate: pointer(true)},
		ClientStatus:      "running", TaskStates: map[string]*nomad.TaskState{"counter": fixtureTaskState("running")},
		NextAllocation: NewAlloc, CreateIndex: 20, ModifyIndex: 30, AllocModifyIndex: 30,
		CreateTime: fixtureTime.UnixNano(), ModifyTime: fixtureTime.UnixNano(),
	}
}

func fixtureNewAlloc() *nomad.Allocation {
	return &nomad.Allocation{
		ID: NewAlloc, Namespace: "default", EvalID: "e0000000-0000-4000-8000-000000000001", Name: "example-counter.counter[0]",
		NodeID: NodeB, NodeName: "client-b", JobID: JobID, Job: fixtureJob(), TaskGroup: "counter",
		DesiredStatus: "run", ClientStatus: "pending",
		TaskStates:         map[string]*nomad.TaskState{"counter": fixtureTaskState("pending")},
		PreviousAllocation: OldAlloc, CreateIndex: 31, ModifyIndex: 31, AllocModifyIndex: 31,
		CreateTime: fixtureTime.UnixNano(), ModifyTime: fixtureTime.UnixNano(),
	}
}

func fixtureJob() *nomad.Job {
	return &nomad.Job{
		ID: pointer(JobID), Name: pointer(JobID), Type: pointer("service"), Datacenters: []string{"dc1"},
		Version: pointer(uint64(0)), Status: pointer("running"),
		TaskGroups: []*nomad.TaskGroup{{
			Name: pointer("counter"), Count: pointer(1),
			Migrate: &nomad.MigrateStrategy{MaxParallel: pointer(1), HealthCheck: pointer("checks"), MinHealthyTime: pointer(10 * time.Second), HealthyDeadline: pointer(5 * time.Minute)},
			Tasks: []*nomad.Task{{
				Name: "counter", Driver: "chain",
				Config: map[string]interface{}{"command": "/usr/bin/python3", "args": []string{"-m", "http.server"}},
			}},
		}},
	}
}
