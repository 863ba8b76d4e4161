/* A minimal C epoll greeting server, for scripts/compare.sh: the floor for server CPU
   per connection (accept4, write, close). Built three times: plain (`c`), with
   -DCLOSE_POLICY=1 (`c-policy`), which adds greeter's close policy, and with
   -DPROXY_HEADER=1 as well (`c-proxy`): the listener defers accepts until data has
   come (TCP_DEFER_ACCEPT, 1 s, as greeter's PROXY listeners), and each connection's
   PROXY header is taken with one recv before the greeting (not parsed: the floor of
   the PROXY path). A connection whose header is not there yet waits in epoll for it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* CLOSE_POLICY 1: greeter's close: FIN right behind the greeting, then one TCP_INFO to
   learn whether anything is unsent or unread (a 38-byte greeting to a silent peer never
   is, so the answer is not acted on here). */
#ifndef CLOSE_POLICY
#define CLOSE_POLICY 0
#endif
#ifndef PROXY_HEADER
#define PROXY_HEADER 0
#endif

static const char greeting[] = "Hello there! This is the hosted server";

static void greet(int conn) {
    if (write(conn, greeting, sizeof greeting - 1) < 0) perror("write");
#if CLOSE_POLICY
    struct tcp_info info;
    socklen_t info_len = sizeof info;
    shutdown(conn, SHUT_WR);
    if (getsockopt(conn, IPPROTO_TCP, TCP_INFO, &info, &info_len)) perror("getsockopt");
#endif
    close(conn);
}

#if PROXY_HEADER
/* One recv of up to 536 bytes (the longest header greeter takes): 1 once it came,
   0 if it has not come yet, -1 if the connection is to be closed. */
static int take_header(int conn) {
    char header[536];
    ssize_t got = recv(conn, header, sizeof header, 0);
    if (got > 0) return 1;
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return -1;
}
#endif


int main(void) {
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
#if PROXY_HEADER
    int defer_seconds = 1;
    setsockopt(listener, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds, sizeof defer_seconds);
#endif
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024) ||
        getsockname(listener, (struct sockaddr *)&addr, &len)) {
        perror("listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int poll = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN | EPOLLET, .data.fd = listener}, ready[64];
    epoll_ctl(poll, EPOLL_CTL_ADD, listener, &event);
    for (;;) {
        int count = epoll_wait(poll, ready, 64, -1);
        if (count < 0 && errno != EINTR) return 1;
#if PROXY_HEADER
        /* Connections whose header has come since they were accepted. */
        for (int i = 0; i < count; i++) {
            int conn = ready[i].data.fd;
            if (conn == listener) continue;
            int header = take_header(conn);
            if (header == 0) continue;
            epoll_ctl(poll, EPOLL_CTL_DEL, conn, NULL);
            if (header > 0) greet(conn); else close(conn);
        }
#endif
        for (;;) {
            int conn = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
            if (conn < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break; /* EAGAIN: backlog drained */
            }
#if PROXY_HEADER
            int header = take_header(conn);
            if (header == 0) {
                struct epoll_event wait_header = {.events = EPOLLIN, .data.fd = conn};
                epoll_ctl(poll, EPOLL_CTL_ADD, conn, &wait_header);
                continue;
            }
            if (header < 0) { close(conn); continue; }
#endif
            greet(conn);
        }
    }
}
