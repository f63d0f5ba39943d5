/*
 * The floor under every runtime's `run` of /bin/true with `berth spec`'s default config: the
 * same system calls berth, crun and runc make for it (the state dir and its record, the
 * clone into a new pid namespace, mount, network, IPC and UTS namespaces, the mounts of the
 * config, the device nodes, one v1 cgroup per hierarchy with the default device rules,
 * pivot_root, the masked and read-only paths, the hostname, the rlimit, the capabilities,
 * no_new_privs, the exec, the wait and the clean-up), in C, with no configuration to read,
 * no checks, no error reporting beyond an exit code, and no protection (exe guard) around
 * the exec. What a runtime costs beyond it is its own.
 *
 *   floor STATE_ROOT ID ROOTFS        (as root; benches/floor.sh builds and times it)
 *
 * Exit code: /bin/true's (0), or 125 with the failed step on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_H 16
static char hier[MAX_H][256];
static int nhier;
static char cg[MAX_H][600];

static void die(const char *what)
{
	perror(what);
	_exit(125);
}

static void put(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0)
		die(path);
	close(fd);
}

/* Copies `name` (cpuset.cpus, cpuset.mems) from the cgroup directory `from` to `to`. */
static void copy_cg(const char *from, const char *to, const char *name)
{
	char p[700], v[256];
	snprintf(p, sizeof p, "%s/%s", from, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, v, sizeof v - 1);
	if (n < 0)
		die(p);
	close(fd);
	v[n] = 0;
	snprintf(p, sizeof p, "%s/%s", to, name);
	put(p, v);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags,
		const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		die(dst);
}

/* The v1 hierarchies: the directories of /sys/fs/cgroup that hold a `tasks` file. */
static void find_hierarchies(void)
{
	DIR *d = opendir("/sys/fs/cgroup");
	struct dirent *e;
	char p[512];
	if (!d)
		die("/sys/fs/cgroup");
	while ((e = readdir(d)) && nhier < MAX_H) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "/sys/fs/cgroup/%s/tasks", e->d_name);
		if (access(p, F_OK) == 0)
			snprintf(hier[nhier++], sizeof hier[0], "%s", e->d_name);
	}
	closedir(d);
}

static const char *masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/sys/firmware", "/proc/scsi", NULL};
static const char *readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
	"/proc/sysrq-trigger", NULL};

static void child(int go, const char *rootfs)
{
	char c;
	char p[512];
	struct stat st;
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) < 0)
		die("unshare");
	mnt(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	mnt(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
	if (chdir(rootfs) < 0)
		die("chdir");
	mnt("proc", "proc", "proc", 0, NULL);
	mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
	mkdir("dev/pts", 0755);
	mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
	    "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mkdir("dev/shm", 0755);
	mnt("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k");
	mkdir("dev/mqueue", 0755);
	mnt("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
	mnt("sysfs", "sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);
	/* In the cgroup from here on: the parent made it; join each hierarchy. */
	if (read(go, &c, 1) != 1)
		_exit(125);
	for (int i = 0; i < nhier; i++) {
		snprintf(p, sizeof p, "%s/tasks", cg[i]);
		put(p, "0");
	}
	mnt("cgroup", "sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755");
	for (int i = 0; i < nhier; i++) {
		snprintf(p, sizeof p, "sys/fs/cgroup/%s", hier[i]);
		mkdir(p, 0755);
		mnt(cg[i], p, NULL, MS_BIND | MS_REC, NULL);
		mnt(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV,
		    NULL);
	}
	mnt(NULL, "sys/fs/cgroup", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV,
	    "mode=755");
	static const struct { const char *name; int major, minor; } devs[] = {
		{"dev/null", 1, 3}, {"dev/zero", 1, 5}, {"dev/full", 1, 7},
		{"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0}};
	for (unsigned i = 0; i < sizeof devs / sizeof devs[0]; i++)
		if (mknod(devs[i].name, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)) < 0)
			die(devs[i].name);
	symlink("/proc/self/fd", "dev/fd");
	symlink("/proc/self/fd/0", "dev/stdin");
	symlink("/proc/self/fd/1", "dev/stdout");
	symlink("/proc/self/fd/2", "dev/stderr");
	symlink("pts/ptmx", "dev/ptmx");
	if (sethostname("berth", 5) < 0)
		die("sethostname");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		die("umount old root");
	if (chdir("/") < 0)
		die("chdir /");
	for (int i = 0; masked[i]; i++) {
		if (stat(masked[i], &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			mnt("tmpfs", masked[i], "tmpfs", MS_RDONLY, NULL);
		else
			mnt("/dev/null", masked[i], NULL, MS_BIND, NULL);
	}
	for (int i = 0; readonly[i]; i++) {
		if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL) < 0)
			continue;
		mnt(NULL, readonly[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
	}
	struct rlimit rl = {1024, 1024};
	setrlimit(RLIMIT_NOFILE, &rl);
	/* Capabilities: NET_BIND_SERVICE, KILL and AUDIT_WRITE in every set. */
	unsigned keep = (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_KILL) | (1u << CAP_AUDIT_WRITE);
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (!(cap < 32 && (keep & (1u << cap))))
			prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{keep, keep, keep}, {0, 0, 0}};
	if (syscall(SYS_capset, &h, d) < 0)
		die("capset");
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_AUDIT_WRITE, 0, 0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs");
	char *argv[] = {"/bin/true", NULL};
	char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"TERM=xterm", NULL};
	execve(argv[0], argv, envp);
	die("execve");
}

int main(int argc, char **argv)
{
	char dir[512], file[600], p[700];
	int pipefd[2], status;
	if (argc != 4) {
		fprintf(stderr, "usage: floor STATE_ROOT ID ROOTFS\n");
		return 2;
	}
	mkdir(argv[1], 0700);
	snprintf(dir, sizeof dir, "%s/%s", argv[1], argv[2]);
	if (mkdir(dir, 0711) < 0)
		die(dir);
	/* The record: written once the init is known, as every runtime does. */
	snprintf(file, sizeof file, "%s/state.json", dir);
	find_hierarchies();
	for (int i = 0; i < nhier; i++)
		snprintf(cg[i], sizeof cg[0], "/sys/fs/cgroup/%s/berth-floor/%s", hier[i], argv[2]);
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		die("pipe");
	pid_t pid = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		die("clone");
	if (pid == 0) {
		close(pipefd[1]);
		child(pipefd[0], argv[3]);
	}
	close(pipefd[0]);
	int fd = open(file, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "{\"id\":\"%s\",\"pid\":%d,\"status\":\"created\"}", argv[2],
			      pid) < 0)
		die(file);
	close(fd);
	for (int i = 0; i < nhier; i++) {
		snprintf(p, sizeof p, "/sys/fs/cgroup/%s/berth-floor", hier[i]);
		if (mkdir(cg[i], 0755) < 0) {
			mkdir(p, 0755);
			if (strcmp(hier[i], "cpuset") == 0) {
				copy_cg("/sys/fs/cgroup/cpuset", p, "cpuset.cpus");
				copy_cg("/sys/fs/cgroup/cpuset", p, "cpuset.mems");
			}
			if (mkdir(cg[i], 0755) < 0)
				die(cg[i]);
		}
		if (strcmp(hier[i], "cpuset") == 0) {
			/* A new v1 cpuset is empty: the parent's CPUs and memory nodes, as runc. */
			copy_cg(p, cg[i], "cpuset.cpus");
			copy_cg(p, cg[i], "cpuset.mems");
		}
		if (strcmp(hier[i], "devices") == 0) {
			/* The default rules: deny all, then the default devices, as runc. */
			static const char *allow[] = {"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm",
				"c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm",
				"c 136:* rwm", "c 10:200 rwm", NULL};
			snprintf(p, sizeof p, "%s/devices.deny", cg[i]);
			put(p, "a");
			snprintf(p, sizeof p, "%s/devices.allow", cg[i]);
			int a = open(p, O_WRONLY | O_CLOEXEC);
			for (int r = 0; a >= 0 && allow[r]; r++)
				if (write(a, allow[r], strlen(allow[r])) < 0)
					die(p);
			close(a);
		}
	}
	if (write(pipefd[1], "G", 1) != 1)
		die("go");
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	for (int i = 0; i < nhier; i++)
		rmdir(cg[i]);
	unlink(file);
	rmdir(dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
