package kubernetes

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
)

// Logs streams what a container of a pod (as FindPod returns it) wrote to
// its stdout and stderr, through the API server: the last tail lines when
// tail > 0, else everything the kubelet keeps, and on as it writes when
// follow is set, until ctx is done. Closing the reader ends the stream.
func (c *Cluster) Logs(ctx context.Context, pod *corev1.Pod, container string, follow bool, tail int) (io.ReadCloser, error) {
	opts := &corev1.PodLogOptions{Container: container, Follow: follow}
	if tail > 0 {
		n := int64(tail)
		opts.TailLines = &n
	}
	rc, err := c.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the logs of container %s of pod %s/%s: %w", container, pod.Namespace, pod.Name, err)
	}
	return rc, nil
}
