package plugincontract

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"nomad-chain/contract/gen/chain/sidecar"
)

// fakeSidecar is an in-memory chain.v1.Sidecar on a unix socket: it checks the shape of what the plugin
// asks for, without running containers. The real sidecar's test is in realsidecar_test.go.
type fakeSidecar struct {
	sidecar.UnimplementedSidecarServer
	socket string

	mu          sync.Mutex
	healthy     bool
	reason      string
	tasks       map[string]*fakeTask
	checkpoints map[string]*sidecar.CheckpointInfo
	calls       []string
	stops       []*sidecar.StopTaskRequest
	signals     []*sidecar.SignalTaskRequest
	migrations  []*sidecar.MigrateToPeerRequest
	takeOvers   []*sidecar.TakeOverRequest
}

type fakeTask struct {
	info *sidecar.TaskInfo
	spec *sidecar.TaskSpec
	done chan struct{}
}

func startFakeSidecar(t *testing.T) *fakeSidecar {
	t.Helper()
	dir, err := os.MkdirTemp("", "nc-b1-sidecar-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeSidecar{
		socket:      filepath.Join(dir, "sidecar.sock"),
		healthy:     true,
		tasks:       map[string]*fakeTask{},
		checkpoints: map[string]*sidecar.CheckpointInfo{},
	}
	listener, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	sidecar.RegisterSidecarServer(server, f)
	go server.Serve(listener)
	t.Cleanup(server.Stop)
	return f
}

func (f *fakeSidecar) record(call string) {
	f.calls = append(f.calls, call)
}

func (f *fakeSidecar) setHealth(healthy bool, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy, f.reason = healthy, reason
}

func (f *fakeSidecar) task(id string) (*fakeTask, error) {
	task, ok := f.tasks[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "task %q not found", id)
	}
	return task, nil
}

func (f *fakeSidecar) Features(context.Context, *sidecar.FeaturesRequest) (*sidecar.FeaturesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("Features")
	return &sidecar.FeaturesResponse{
		Healthy: f.healthy, Reason: f.reason, CriuVersion: "4.2.1", RuncVersion: "1.1.5",
		LazyPages: true, NodeName: "fake-node", TransferAddress: "127.0.0.1:7451",
	}, nil
}

func (f *fakeSidecar) StartTask(_ context.Context, req *sidecar.StartTaskRequest) (*sidecar.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StartTask")
	return f.add(req.GetIdentity(), req.GetSpec(), "")
}

func (f *fakeSidecar) add(identity *sidecar.TaskIdentity, spec *sidecar.TaskSpec, checkpoint string) (*sidecar.TaskInfo, error) {
	id := identity.GetTaskId()
	if id == "" || strings.Contains(id, "/") {
		return nil, status.Errorf(codes.InvalidArgument, "task id %q is empty or has a slash", id)
	}
	if _, exists := f.tasks[id]; exists {
		return nil, status.Errorf(codes.AlreadyExists, "task %q exists", id)
	}
	if len(spec.GetArgv()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "empty argv")
	}
	info := &sidecar.TaskInfo{
		Identity: identity, State: sidecar.TaskState_TASK_STATE_RUNNING, Pid: 4242,
		StartedAtUnixMs: time.Now().UnixMilli(), NodeName: "fake-node", RestoredFromCheckpoint: checkpoint,
	}
	f.tasks[id] = &fakeTask{info: info, spec: spec, done: make(chan struct{})}
	return info, nil
}

func (f *fakeSidecar) WaitTask(ctx context.Context, req *sidecar.TaskRef) (*sidecar.WaitTaskResponse, error) {
	f.mu.Lock()
	task, err := f.task(req.GetTaskId())
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case <-task.done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &sidecar.WaitTaskResponse{Exit: task.info.GetExit()}, nil
}

func (f *fakeSidecar) exit(task *fakeTask, state sidecar.TaskState, exit *sidecar.ExitResult) {
	if task.info.State != sidecar.TaskState_TASK_STATE_RUNNING {
		return
	}
	task.info.State = state
	task.info.Exit = exit
	task.info.CompletedAtUnixMs = time.Now().UnixMilli()
	task.info.Pid = 0
	close(task.done)
}

func (f *fakeSidecar) StopTask(_ context.Context, req *sidecar.StopTaskRequest) (*sidecar.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("StopTask")
	f.stops = append(f.stops, req)
	task, err := f.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	f.exit(task, sidecar.TaskState_TASK_STATE_EXITED, &sidecar.ExitResult{ExitCode: 143, Signal: 15})
	return task.info, nil
}

func (f *fakeSidecar) DestroyTask(_ context.Context, req *sidecar.DestroyTaskRequest) (*sidecar.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("DestroyTask")
	task, err := f.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	if task.info.State == sidecar.TaskState_TASK_STATE_RUNNING && !req.GetForce() {
		return nil, status.Error(codes.FailedPrecondition, "task running")
	}
	f.exit(task, sidecar.TaskState_TASK_STATE_EXITED, &sidecar.ExitResult{ExitCode: 137, Signal: 9})
	delete(f.tasks, req.GetTaskId())
	return task.info, nil
}

func (f *fakeSidecar) InspectTask(_ context.Context, req *sidecar.TaskRef) (*sidecar.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("InspectTask")
	task, err := f.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	return task.info, nil
}

func (f *fakeSidecar) SignalTask(_ context.Context, req *sidecar.SignalTaskRequest) (*sidecar.TaskInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("SignalTask")
	f.signals = append(f.signals, req)
	task, err := f.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	return task.info, nil
}

func (f *fakeSidecar) ExecTask(_ context.Context, req *sidecar.ExecTaskRequest) (*sidecar.ExecTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ExecTask")
	if _, err := f.task(req.GetTaskId()); err != nil {
		return nil, err
	}
	return &sidecar.ExecTaskResponse{Stdout: []byte("ran " + strings.Join(req.GetArgv(), " ")), Stderr: []byte("warn"), ExitCode: 3}, nil
}

func (f *fakeSidecar) TaskStats(_ context.Context, req *sidecar.TaskRef) (*sidecar.TaskStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("TaskStats")
	if _, err := f.task(req.GetTaskId()); err != nil {
		return nil, err
	}
	return &sidecar.TaskStatsResponse{
		TimestampUnixMs: time.Now().UnixMilli(), MemoryRssBytes: 1 << 20, MemoryUsageBytes: 2 << 20,
		MemoryMaxUsageBytes: 3 << 20, CpuPercent: 12.5, Pids: []int32{4242},
	}, nil
}

func (f *fakeSidecar) MigrateToPeer(_ context.Context, req *sidecar.MigrateToPeerRequest) (*sidecar.MigrateToPeerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("MigrateToPeer")
	f.migrations = append(f.migrations, req)
	task, err := f.task(req.GetTaskId())
	if err != nil {
		return nil, err
	}
	checkpoint := &sidecar.CheckpointInfo{
		CheckpointId: fmt.Sprintf("ckpt-%d", len(f.migrations)), HandoverKey: req.GetHandoverKey(),
		Source: task.info.GetIdentity(), SizeBytes: 8192, Spec: task.spec, SourceNode: "fake-node",
		CreatedAtUnixMs: time.Now().UnixMilli(),
	}
	f.checkpoints[req.GetHandoverKey()] = checkpoint
	f.exit(task, sidecar.TaskState_TASK_STATE_MIGRATED, &sidecar.ExitResult{})
	return &sidecar.MigrateToPeerResponse{Checkpoint: checkpoint, ModeUsed: req.GetMode(), WireBytes: 4096, FreezeMs: 12}, nil
}

// TakeOver waits up to wait_ms for the checkpoint, then restores it (consumed: at most once) or, when
// allowed, starts the task cold and says why.
func (f *fakeSidecar) TakeOver(ctx context.Context, req *sidecar.TakeOverRequest) (*sidecar.TakeOverResponse, error) {
	f.mu.Lock()
	f.record("TakeOver")
	f.takeOvers = append(f.takeOvers, req)
	f.mu.Unlock()
	deadline := time.Now().Add(time.Duration(req.GetWaitMs()) * time.Millisecond)
	for {
		f.mu.Lock()
		checkpoint, ok := f.checkpoints[req.GetHandoverKey()]
		if ok {
			delete(f.checkpoints, req.GetHandoverKey())
			info, err := f.add(req.GetIdentity(), req.GetSpec(), checkpoint.GetCheckpointId())
			f.mu.Unlock()
			if err != nil {
				return nil, err
			}
			return &sidecar.TakeOverResponse{Task: info, RestoredFrom: checkpoint}, nil
		}
		if time.Now().After(deadline) {
			defer f.mu.Unlock()
			reason := fmt.Sprintf("no checkpoint filed under %s within %d ms", req.GetHandoverKey(), req.GetWaitMs())
			if !req.GetColdStartFallback() {
				return nil, status.Error(codes.NotFound, reason)
			}
			info, err := f.add(req.GetIdentity(), req.GetSpec(), "")
			if err != nil {
				return nil, err
			}
			return &sidecar.TakeOverResponse{Task: info, ColdReason: reason, NoCheckpoint: true}, nil
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f *fakeSidecar) callCount(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}
