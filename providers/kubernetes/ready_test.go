package kubernetes

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottle-apply/bottle-apply/bottle"
)

func readyPod(role string, mod func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p-" + role, Namespace: "ns", Labels: labelsOf("b", role)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: role, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	if mod != nil {
		mod(&p)
	}
	return p
}

func waitingFor(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	}
}

// TestJudgeReady: what AwaitReady waits for and what fails it at once,
// with the pod's own words.
func TestJudgeReady(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		pods        []corev1.Pod
		waiting     string // "" when nothing waits
		failed      string // "" when nothing failed
		failedCount int
	}{
		{name: "both ready", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, nil)}},
		{name: "no pods yet", waiting: "the bundle of bottle b: no pod yet"},
		{name: "bundle not ready", pods: []corev1.Pod{readyPod(bottle.RoleBundle, func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }), readyPod(bottle.RoleAgent, nil)},
			waiting: "the bundle of bottle b: running"},
		{name: "agent confined wait", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: containerConfined, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
		})}, waiting: "the agent of bottle b: waiting until its NetworkPolicy is enforced"},
		{name: "image pull", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, waitingFor("ImagePullBackOff", "Back-off pulling image \"x\""))},
			failed: "the agent of bottle b cannot start: its image cannot be pulled (container agent of pod ns/p-agent: ImagePullBackOff: Back-off pulling image \"x\")", failedCount: 1},
		{name: "crash loop", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, func(p *corev1.Pod) {
			waitingFor("CrashLoopBackOff", "back-off 10s")(p)
			p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3, Message: "boom"}}
		})}, failed: "its command keeps exiting (container agent of pod ns/p-agent: CrashLoopBackOff: back-off 10s); it last exited with code 3: boom", failedCount: 1},
		{name: "unschedulable", pods: []corev1.Pod{readyPod(bottle.RoleBundle, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes are available: insufficient memory"}}
		}), readyPod(bottle.RoleAgent, nil)}, failed: "no node can run pod ns/p-bundle (Unschedulable): 0/1 nodes are available: insufficient memory", failedCount: 1},
		{name: "sysctls refused", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason = corev1.PodFailed, "SysctlForbidden"
		})}, failed: "allowedUnsafeSysctls", failedCount: 1},
		{name: "an old terminating pod does not speak", pods: []corev1.Pod{readyPod(bottle.RoleBundle, nil), readyPod(bottle.RoleAgent, func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{}
			waitingFor("CrashLoopBackOff", "")(p)
		})}, waiting: "the agent of bottle b: no pod yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			waiting, failed := judgeReady([]string{"b"}, tc.pods)
			if got := strings.Join(waiting, "; "); (tc.waiting == "") != (got == "") || !strings.Contains(got, tc.waiting) {
				t.Errorf("waiting = %q, want %q", got, tc.waiting)
			}
			err := errors.Join(failed...)
			if len(failed) != tc.failedCount || tc.failed != "" && !strings.Contains(err.Error(), tc.failed) {
				t.Errorf("failed = %v, want %d with %q", err, tc.failedCount, tc.failed)
			}
		})
	}
}
