package plugincontract

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"nomad-chain/contract/gen/nomad/drivers"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// transferNode starts a real sidecar whose State Transfer Protocol listens on loopback with mutual TLS.
func transferNode(t *testing.T, certDir, node string) *realSidecar {
	t.Helper()
	port := freePort(t)
	return startRealSidecar(t, node,
		fmt.Sprintf("NOMAD_CHAIN_TRANSFER_PORT=%d", port),
		fmt.Sprintf("NOMAD_CHAIN_ADVERTISE_ADDRESS=127.0.0.1:%d", port),
		"NOMAD_CHAIN_TLS_CA="+filepath.Join(certDir, "ca.crt"),
		"NOMAD_CHAIN_TLS_CERT="+filepath.Join(certDir, node+".crt"),
		"NOMAD_CHAIN_TLS_KEY="+filepath.Join(certDir, node+".key"),
	)
}

// Two nodes, each a real sidecar with its own plugin instance, and Nomad's lineage from the HTTP stand-in:
// the old allocation's stop hands the running task over, the replacement's start restores it, and its
// in-memory counter continues instead of starting again.
func TestRealChainedMigrationBetweenTwoSidecars(t *testing.T) {
	certDir := t.TempDir()
	root, _ := filepath.Abs("../../..")
	if out, err := exec.Command("bash", filepath.Join(root, "scripts/gen-certs.sh"), certDir, "nc-b1-a", "nc-b1-b").CombinedOutput(); err != nil {
		t.Fatalf("gen-certs: %v\n%s", err, out)
	}
	sidecarA := transferNode(t, certDir, "nc-b1-a")
	sidecarB := transferNode(t, certDir, "nc-b1-b")
	ctx := ctxTimeout(t, 10*time.Minute)

	standIn := startNomadStandIn(t, "")
	pluginA, pluginB := launch(t), launch(t)
	configure(t, pluginA, "sidecar_socket = \""+sidecarA.socket+"\"\nnomad_address = \""+standIn.url+"\"")
	configure(t, pluginB, "sidecar_socket = \""+sidecarB.socket+"\"\nnomad_address = \""+standIn.url+"\"")

	// Node B's fingerprint is where Nomad learns its transfer address; the stand-in serves it as node B's attribute.
	fpB, err := fingerprints(t, pluginB).Recv()
	if err != nil || fpB.GetHealth() != drivers.FingerprintResponse_HEALTHY {
		t.Fatalf("node B fingerprint = %v, %v", fpB, err)
	}
	nodeB := newID()
	attributes := map[string]string{"driver.chain": "1"}
	for key, value := range fpB.GetAttributes() {
		attributes[key] = value.GetStringVal()
	}
	standIn.putNode(&nomad.Node{ID: nodeB, Name: "nc-b1-b", Attributes: attributes})
	oldAlloc, newAlloc := newID(), newID()
	standIn.putAlloc(&nomad.Allocation{ID: oldAlloc, NodeID: newID(), DesiredStatus: "stop", NextAllocation: newAlloc,
		DesiredTransition: nomad.DesiredTransition{Migrate: pointer(true)}})
	standIn.putAlloc(&nomad.Allocation{ID: newAlloc, NodeID: nodeB, DesiredStatus: "run", PreviousAllocation: oldAlloc})

	body := `
command        = "/bin/sh"
args           = ["-c", "i=0; while :; do i=$((i+1)); echo $i > /alloc/counter; sleep 0.2; done"]
migration_mode = "stop-and-copy"
`
	oldCfg := taskConfig(t, pluginA, oldAlloc, "counter", body)
	oldCfg.StdoutPath, oldCfg.StderrPath = "", ""
	if _, err := pluginA.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: oldCfg}); err != nil {
		t.Fatalf("StartTask on node A: %v", err)
	}
	t.Cleanup(func() {
		_, _ = pluginA.driver.DestroyTask(ctxTimeout(t, time.Minute), &drivers.DestroyTaskRequest{TaskId: oldCfg.Id, Force: true})
	})
	oldCounter := filepath.Join(oldCfg.AllocDir, "alloc", "counter")
	counterPasses(t, oldCounter, 5)

	waited := make(chan *drivers.WaitTaskResponse, 1)
	go func() {
		resp, _ := pluginA.driver.WaitTask(ctxTimeout(t, 10*time.Minute), &drivers.WaitTaskRequest{TaskId: oldCfg.Id})
		waited <- resp
	}()
	if _, err := pluginA.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: oldCfg.Id, Timeout: durationpb.New(5 * time.Second)}); err != nil {
		t.Fatalf("StopTask (hand-over) on node A: %v", err)
	}
	if resp := <-waited; resp.GetResult() == nil {
		t.Fatalf("WaitTask on node A after hand-over = %v", resp)
	}
	lastOld := readCounter(t, oldCounter)

	newCfg := taskConfig(t, pluginB, newAlloc, "counter", body)
	newCfg.StdoutPath, newCfg.StderrPath = "", ""
	if _, err := pluginB.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: newCfg}); err != nil {
		t.Fatalf("StartTask of the replacement on node B: %v", err)
	}
	t.Cleanup(func() {
		_, _ = pluginB.driver.DestroyTask(ctxTimeout(t, time.Minute), &drivers.DestroyTaskRequest{TaskId: newCfg.Id, Force: true})
	})
	inspected, err := pluginB.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: newCfg.Id})
	if err != nil || inspected.GetDriver().GetAttributes()["restored_from_checkpoint"] == "" {
		t.Fatalf("the replacement was not restored from a checkpoint: %v, %v", inspected, err)
	}
	// The restored shell writes into the replacement's own /alloc, continuing from where it was frozen.
	newCounter := filepath.Join(newCfg.AllocDir, "alloc", "counter")
	resumed := counterPasses(t, newCounter, lastOld)
	if resumed <= lastOld {
		t.Fatalf("counter restarted: old allocation reached %d, replacement shows %d", lastOld, resumed)
	}
	t.Logf("counter continued across the hand-over: %d on node A, %d on node B", lastOld, resumed)
	if bad := standIn.unexpected(); len(bad) > 0 {
		t.Fatalf("unexpected Nomad API requests: %v", bad)
	}
}
