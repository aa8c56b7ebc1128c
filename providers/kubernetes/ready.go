package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/bottle-apply/bottle-apply/bottle"
)

// stuck are the reasons a container waits that no wait mends.
var stuck = map[string]string{
	"ErrImagePull":               "its image cannot be pulled",
	"ImagePullBackOff":           "its image cannot be pulled",
	"InvalidImageName":           "its image name is not valid",
	"ErrImageNeverPull":          "its image is not on the node",
	"CrashLoopBackOff":           "its command keeps exiting",
	"CreateContainerConfigError": "its configuration is refused",
	"CreateContainerError":       "its container cannot be made",
	"RunContainerError":          "its container cannot be started",
}

// readyPoll is how often AwaitReady looks at the pods.
const readyPoll = 500 * time.Millisecond

// AwaitReady waits until, for each bottle, the bundle's pod is ready (it
// serves) and the agent's pod runs, for at most within; a pod that cannot
// start fails it at once with the pod's own reason and message. It says
// what it waits for every few seconds.
func (p *Provider) AwaitReady(ctx context.Context, bottles []string, within time.Duration) error {
	c, err := p.Cluster()
	if err != nil {
		return err
	}
	req, err := labels.NewRequirement(bottle.LabelName, selection.In, bottles)
	if err != nil {
		return err
	}
	sel := metav1.ListOptions{LabelSelector: labels.NewSelector().Add(*req).String()}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	log := zerolog.Ctx(ctx)
	start, lastSaid := time.Now(), time.Now()
	for {
		l, err := c.Client.CoreV1().Pods("").List(ctx, sel)
		if err != nil {
			if ctx.Err() == nil {
				return fmt.Errorf("watch the pods of %s: %w", strings.Join(bottles, ", "), explain(err))
			}
		} else {
			waiting, failed := judgeReady(bottles, l.Items)
			if len(failed) > 0 {
				return errors.Join(failed...)
			}
			if len(waiting) == 0 {
				log.Debug().Strs("bottles", bottles).Dur("took", time.Since(start)).Msg("pods ready")
				return nil
			}
			if time.Since(lastSaid) >= 5*time.Second {
				lastSaid = time.Now()
				log.Info().Strs("waiting", waiting).Str("for", time.Since(start).Round(time.Second).String()).Msg("waiting for the bottles' pods")
			}
			select {
			case <-ctx.Done():
				if ctx.Err() == context.DeadlineExceeded {
					return fmt.Errorf("the pods were not ready within %s: %s\nraise --kube-ready-timeout, or look at them with kubectl describe pod",
						within, strings.Join(waiting, "; "))
				}
				return ctx.Err()
			case <-time.After(readyPoll):
			}
			continue
		}
		return ctx.Err()
	}
}

// judgeReady says, of the pods of the bottles, which roles are still
// waiting (and for what) and which cannot start.
func judgeReady(bottles []string, pods []corev1.Pod) (waiting []string, failed []error) {
	for _, b := range bottles {
		for _, role := range []string{bottle.RoleBundle, bottle.RoleAgent} {
			var cur []*corev1.Pod
			for i := range pods {
				pod := &pods[i]
				if pod.Labels[bottle.LabelName] == b && pod.Labels[bottle.LabelRole] == role && pod.DeletionTimestamp == nil {
					cur = append(cur, pod)
				}
			}
			what := fmt.Sprintf("the %s of bottle %s", role, b)
			if len(cur) == 0 {
				waiting = append(waiting, what+": no pod yet")
				continue
			}
			// The newest pod speaks for the role.
			sort.Slice(cur, func(i, j int) bool { return cur[j].CreationTimestamp.Before(&cur[i].CreationTimestamp) })
			pod := cur[0]
			if err := cannotStart(what, pod); err != nil {
				failed = append(failed, err)
				continue
			}
			ok := pod.Status.Phase == corev1.PodRunning && allRunning(pod)
			if role == bottle.RoleBundle {
				ok = ok && podReady(pod)
			}
			if !ok {
				waiting = append(waiting, fmt.Sprintf("%s: %s", what, podStatus(pod)))
			}
		}
	}
	return waiting, failed
}

func allRunning(pod *corev1.Pod) bool {
	if len(pod.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return false
		}
	}
	return true
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cannotStart is the error of a pod that will not start by waiting, with
// its own reason and message.
func cannotStart(what string, pod *corev1.Pod) error {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return fmt.Errorf("%s cannot start: no node can run pod %s/%s (Unschedulable): %s", what, pod.Namespace, pod.Name, c.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		msg := fmt.Sprintf("%s cannot start: pod %s/%s ended (%s): %s %s", what, pod.Namespace, pod.Name, pod.Status.Phase, pod.Status.Reason, pod.Status.Message)
		if pod.Status.Reason == "SysctlForbidden" {
			msg += "\nbottle-apply switches IPv6 off in its pods (an IPv4 NetworkPolicy does not confine it): allow the sysctls " +
				"net.ipv6.conf.all.disable_ipv6 and net.ipv6.conf.default.disable_ipv6 in the kubelet's allowedUnsafeSysctls"
		}
		return errors.New(msg)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		why, bad := stuck[w.Reason]
		if !bad {
			continue
		}
		msg := fmt.Sprintf("%s cannot start: %s (container %s of pod %s/%s: %s", what, why, cs.Name, pod.Namespace, pod.Name, w.Reason)
		if w.Message != "" {
			msg += ": " + w.Message
		}
		msg += ")"
		if t := cs.LastTerminationState.Terminated; t != nil {
			msg += fmt.Sprintf("; it last exited with code %d", t.ExitCode)
			if t.Message != "" {
				msg += ": " + strings.TrimSpace(t.Message)
			}
		}
		switch w.Reason {
		case "CrashLoopBackOff":
			msg += fmt.Sprintf("\nfix spec.agent.command or the image (see kubectl logs -n %s %s -c %s --previous)", pod.Namespace, pod.Name, cs.Name)
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
			msg += "\ncheck the image reference, and that the cluster's nodes can pull it (a private registry needs an image pull secret)"
		}
		return errors.New(msg)
	}
	return nil
}
