/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tcp_frames.c - a TCP data channel's byte stream, as a hostile source
 * may send it, through the real receive path (rmig_tcp_recv_frame) into a
 * destination session: frame headers, RAM writes, zero ranges, device-state
 * chunks, sync markers. Nothing may land outside a block or a blob.
 */
#include <errno.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmig_session *s = fz_dest_open();
	int fds[2], io_err, rc, buf = 1 << 18;

	if (size > 65536)
		size = 65536; /* fits the socket buffer: the writer never blocks */
	/* a stream socket, as a data channel is: the receive path uses recv() */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
		abort();
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (size && write(fds[1], data, size) != (ssize_t)size)
		abort();
	close(fds[1]);
	/* the channel's own path: frames read ahead, payloads past it straight into place */
	static struct rmig_tcp_rd rd;

	rd.head = rd.tail = 0;
	do
		rc = rmig_tcp_recv_frame(fds[0], NULL, &rd, (unsigned int)(size % FZ_CHANNELS), &s->up,
					 1000, &io_err);
	while (!rc);
	/* recv() into a guard page fails with EFAULT instead of crashing: same verdict */
	if (io_err == -EFAULT)
		abort();
	close(fds[0]);
	fz_dest_close(s);
	return 0;
}
