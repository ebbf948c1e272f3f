/*
 * terminus pause: the infrastructure ("sandbox") process of a Kubernetes pod.
 *
 * It holds the pod's namespaces open and does nothing else: it sleeps until it
 * receives SIGINT or SIGTERM and then exits 0; when it runs as PID 1 of a shared PID
 * namespace it also reaps orphaned children (SIGCHLD). `pause -v` prints a version.
 *
 * Written for terminus; build statically: cc -static -Os -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TERMINUS_PAUSE_VERSION "terminus-pause 1.0"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

static void on_child(int sig) {
	int saved = errno;
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

static int install(int sig, void (*handler)(int)) {
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = (sig == SIGCHLD) ? (SA_NOCLDSTOP | SA_RESTART) : 0;
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts(TERMINUS_PAUSE_VERSION);
		return 0;
	}
	if (getpid() != 1) {
		fprintf(stderr, "pause: warning: not running as PID 1\n");
	}
	if (install(SIGINT, on_stop) || install(SIGTERM, on_stop) || install(SIGCHLD, on_child)) {
		perror("pause: sigaction");
		return 1;
	}
	while (!stop_signal) {
		pause();
	}
	fprintf(stderr, "pause: shutting down on signal %d\n", (int)stop_signal);
	return 0;
}
