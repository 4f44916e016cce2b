package plugincontract

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"nomad-chain/contract/gen/chain/sidecar"
	"nomad-chain/contract/gen/nomad/drivers"
)

// realSidecar is the project's sidecar process (sidecar/src/main.ts) with its own data directory, runc root
// and cgroup parent, on a unix socket the plugin is configured with.
type realSidecar struct {
	socket       string
	dataDir      string
	cgroupParent string
	cmd          *exec.Cmd
}

func startRealSidecar(t *testing.T, node string, extraEnv ...string) *realSidecar {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/runc", "/usr/local/sbin/criu"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("the real-sidecar contract test needs %s (run npm run setup): %v", bin, err)
		}
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dataDir, err := os.MkdirTemp("", "nc-b1-real-")
	if err != nil {
		t.Fatal(err)
	}
	// The sidecar refuses a data dir its tasks' user namespace cannot search (MkdirTemp makes it 0700).
	if err := os.Chmod(dataDir, 0o711); err != nil {
		t.Fatal(err)
	}
	s := &realSidecar{
		socket:       filepath.Join(dataDir, "sidecar.sock"),
		dataDir:      dataDir,
		cgroupParent: "/nc-b1-contract/" + filepath.Base(dataDir),
	}
	s.cmd = exec.Command("node", "-r", "./scripts/register.js", "sidecar/src/main.ts")
	s.cmd.Dir = root
	s.cmd.Stdout = testWriter{t}
	s.cmd.Stderr = testWriter{t}
	s.cmd.Env = append(os.Environ(),
		"NOMAD_CHAIN_NODE_NAME="+node,
		"NOMAD_CHAIN_DATA_DIR="+dataDir,
		"NOMAD_CHAIN_LOCAL_SOCKET="+s.socket,
		"NOMAD_CHAIN_LISTEN_ADDRESS=127.0.0.1",
		"NOMAD_CHAIN_LISTEN_PORT=0",
		"NOMAD_CHAIN_CGROUP_PARENT="+s.cgroupParent,
		"NOMAD_CHAIN_LOG_LEVEL=warn",
	)
	s.cmd.Env = append(s.cmd.Env, extraEnv...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sidecar: %v", err)
	}
	t.Cleanup(s.stop)
	s.waitServing(t)
	return s
}

// waitServing polls the local API's Features until the sidecar answers (it probes CRIU and runc first).
func (s *realSidecar) waitServing(t *testing.T) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := sidecar.NewSidecarClient(conn)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.Features(ctx, &sidecar.FeaturesRequest{})
		cancel()
		if err == nil {
			return
		}
		if s.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("the real sidecar never served its local API at %s: %v", s.socket, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *realSidecar) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	// Containers the test left behind (a failed run), then their cgroups and the data directory.
	runcRoot := filepath.Join(s.dataDir, "runc")
	if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", runcRoot, "delete", "-f", id).Run()
		}
	}
	controllers, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range controllers {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", c.Name(), s.cgroupParent))
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", c.Name(), "/nc-b1-contract"))
	}
	_ = os.RemoveAll(s.dataDir)
}

func readCounter(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return -1
	}
	return n
}

// counterPasses waits until the task's counter file exceeds `after`: the container really runs.
func counterPasses(t *testing.T, path string, after int) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if n := readCounter(t, path); n > after {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("counter at %s never passed %d", path, after)
	return 0
}

func TestRealSidecarRunsAndRecoversATask(t *testing.T) {
	real := startRealSidecar(t, "nc-b1-contract")
	config := `
sidecar_socket = "` + real.socket + `"
nomad_address  = ""
`
	p := launch(t)
	configure(t, p, config)
	ctx := ctxTimeout(t, 10*time.Minute)

	fp, err := fingerprints(t, p).Recv()
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if fp.GetHealth() != drivers.FingerprintResponse_HEALTHY || fp.GetAttributes()["driver.chain.criu_version"].GetStringVal() == "" {
		t.Fatalf("fingerprint against the real sidecar = %v", fp)
	}

	cfg := taskConfig(t, p, newID(), "counter", `
command = "/bin/sh"
args    = ["-c", "i=0; while :; do i=$((i+1)); echo $i > /alloc/counter; sleep 0.2; done"]
`)
	cfg.StdoutPath, cfg.StderrPath = "", ""
	started, err := p.driver.StartTask(ctx, &drivers.StartTaskRequest{Task: cfg})
	if err != nil {
		t.Fatalf("StartTask on the real sidecar: %v", err)
	}
	counter := filepath.Join(cfg.AllocDir, "alloc", "counter")
	first := counterPasses(t, counter, 2)

	inspected, err := p.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil || inspected.GetTask().GetState() != drivers.TaskState_RUNNING || inspected.GetDriver().GetAttributes()["pid"] == "" {
		t.Fatalf("InspectTask = %v, %v", inspected, err)
	}
	exec, err := p.driver.ExecTask(ctx, &drivers.ExecTaskRequest{TaskId: cfg.Id, Command: []string{"/bin/cat", "/alloc/counter"}, Timeout: durationpb.New(30 * time.Second)})
	if err != nil {
		t.Fatalf("ExecTask in the container: %v", err)
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(exec.GetStdout()))); err != nil || n < first || exec.GetResult().GetExitCode() != 0 {
		t.Fatalf("ExecTask cat /alloc/counter = %q (exit %d)", exec.GetStdout(), exec.GetResult().GetExitCode())
	}
	stats, err := p.driver.TaskStats(ctx, &drivers.TaskStatsRequest{TaskId: cfg.Id, CollectionInterval: durationpb.New(time.Second)})
	if err != nil {
		t.Fatalf("TaskStats: %v", err)
	}
	if sample, err := stats.Recv(); err != nil || sample.GetStats().GetTimestamp() == nil || sample.GetStats().GetAggResourceUsage() == nil {
		t.Fatalf("TaskStats sample = %v, %v", sample, err)
	}
	if _, err := p.driver.SignalTask(ctx, &drivers.SignalTaskRequest{TaskId: cfg.Id, Signal: "SIGCONT"}); err != nil {
		t.Fatalf("SignalTask: %v", err)
	}

	// The plugin dies with the agent's graceful shutdown; the task does not.
	p.kill(t)
	before := readCounter(t, counter)
	counterPasses(t, counter, before)
	fresh := launch(t)
	configure(t, fresh, config)
	if _, err := fresh.driver.RecoverTask(ctx, &drivers.RecoverTaskRequest{Handle: started.GetHandle()}); err != nil {
		t.Fatalf("RecoverTask from a fresh plugin against the real sidecar: %v", err)
	}
	waited := make(chan *drivers.WaitTaskResponse, 1)
	go func() {
		resp, err := fresh.driver.WaitTask(ctxTimeout(t, 5*time.Minute), &drivers.WaitTaskRequest{TaskId: cfg.Id})
		if err != nil {
			t.Errorf("WaitTask: %v", err)
		}
		waited <- resp
	}()
	if _, err := fresh.driver.StopTask(ctx, &drivers.StopTaskRequest{TaskId: cfg.Id, Timeout: durationpb.New(5 * time.Second), Signal: "SIGTERM"}); err != nil {
		t.Fatalf("StopTask: %v", err)
	}
	result := <-waited
	if result.GetResult() == nil || (result.GetResult().GetSignal() == 0 && result.GetResult().GetExitCode() == 0) {
		t.Fatalf("WaitTask of a task stopped by a signal = %v", result)
	}
	inspected, err = fresh.driver.InspectTask(ctx, &drivers.InspectTaskRequest{TaskId: cfg.Id})
	if err != nil || inspected.GetTask().GetState() != drivers.TaskState_EXITED {
		t.Fatalf("InspectTask after stop = %v, %v", inspected, err)
	}
	if _, err := fresh.driver.DestroyTask(ctx, &drivers.DestroyTaskRequest{TaskId: cfg.Id, Force: true}); err != nil {
		t.Fatalf("DestroyTask: %v", err)
	}
	fresh.kill(t)
}
