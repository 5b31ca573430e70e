/* C API test, compiled as C11: create/update/route/lease/forward against a vllm-sim it starts.
 * Usage: test_c_api PATH_TO_VLLM_SIM */
#define _POSIX_C_SOURCE 200809L

#include <vllm_router_c.h>

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
static pid_t sim_pid = -1;

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
              __LINE__, #cond, vr_last_error());                            \
      ++failures;                                                           \
    }                                                                       \
  } while (0)

static void stop_sim(void) {
  if (sim_pid > 0) {
    kill(sim_pid, SIGTERM);
    waitpid(sim_pid, NULL, 0);
    sim_pid = -1;
  }
}

/* Starts vllm-sim on a free port; writes "http://HOST:PORT" into url. */
static int start_sim(const char* binary, char* url, size_t url_size) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(binary, binary, "--port", "0", "--output-tokens", "8", (char*)NULL);
    _exit(127);
  }
  close(fds[1]);
  sim_pid = pid;
  char line[256];
  size_t n = 0;
  while (n + 1 < sizeof line) {
    ssize_t got = read(fds[0], line + n, 1);
    if (got <= 0) break;
    if (line[n] == '\n') break;
    ++n;
  }
  line[n] = '\0';
  close(fds[0]); /* the sim prints nothing more on stdout */
  const char* prefix = "vllm-sim listening on ";
  if (strncmp(line, prefix, strlen(prefix)) != 0) {
    fprintf(stderr, "vllm-sim did not start: '%s'\n", line);
    return -1;
  }
  snprintf(url, url_size, "%s", line + strlen(prefix));
  return 0;
}

/* ------------------------------------------------------------------ observer and policy */

typedef struct {
  pthread_mutex_t mutex;
  int outcomes;
  int successes;
  int cancelled;
  int connect_failures;
  int last_status;
} observed;

static void on_outcome(void* user, const char* model, const char* endpoint_id, const vr_outcome* o) {
  observed* obs = (observed*)user;
  (void)model;
  (void)endpoint_id;
  pthread_mutex_lock(&obs->mutex);
  ++obs->outcomes;
  if (o->kind == VR_OUTCOME_SUCCESS) ++obs->successes;
  if (o->kind == VR_OUTCOME_CANCELLED) ++obs->cancelled;
  if (o->kind == VR_OUTCOME_CONNECT_FAILURE) ++obs->connect_failures;
  obs->last_status = o->status;
  pthread_mutex_unlock(&obs->mutex);
}

/* A custom policy: always the last candidate. Counts its calls. */
static size_t pick_last(void* user, const vr_candidate* const* candidates, size_t count,
                        const vr_pick_request* request) {
  int* calls = (int*)user;
  (void)candidates;
  (void)request;
  ++*calls;
  return count - 1;
}

/* ------------------------------------------------------------------ forward callbacks */

typedef struct {
  int status;
  int is_event_stream;
  int heads;
  int chunks;
  int stop_after; /* on_chunk returns nonzero after this many chunks; 0: never */
  char body[16384];
  size_t size;
} collected;

static int on_head(void* user, const vr_response_head* head) {
  collected* c = (collected*)user;
  ++c->heads;
  c->status = head->status;
  for (size_t i = 0; i < head->header_count; ++i) {
    if (strcmp(head->headers[i].name, "Content-Type") == 0 ||
        strcmp(head->headers[i].name, "content-type") == 0) {
      c->is_event_stream = strncmp(head->headers[i].value, "text/event-stream", 17) == 0;
    }
  }
  return 0;
}

static int on_chunk(void* user, const char* data, size_t size) {
  collected* c = (collected*)user;
  ++c->chunks;
  if (c->size + size < sizeof c->body) {
    memcpy(c->body + c->size, data, size);
    c->size += size;
    c->body[c->size] = '\0';
  }
  return c->stop_after > 0 && c->chunks >= c->stop_after;
}

static void* cancel_later(void* arg) {
  const struct timespec pause = {0, 150 * 1000 * 1000}; /* the forward waits for the first byte by now */
  nanosleep(&pause, NULL);
  vr_cancel_trigger((vr_cancel*)arg);
  return NULL;
}

static double seconds_since(const struct timespec* t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void* error_in_other_thread(void* arg) {
  (void)arg;
  /* The main thread's last error is not visible here. */
  return (void*)(strcmp(vr_last_error(), "") == 0 ? (void*)1 : NULL);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s VLLM_SIM\n", argv[0]);
    return 2;
  }
  char url[256];
  if (start_sim(argv[1], url, sizeof url) != 0) {
    stop_sim();
    return 1;
  }
  atexit(stop_sim);

  /* version */
  CHECK(strlen(vr_version()) >= 5);
  CHECK(strcmp(vr_status_name(VR_UNKNOWN_MODEL), "unknown_model") == 0);
  CHECK(vr_status_http(VR_UNKNOWN_MODEL) == 404);

  /* errors: invalid JSON, invalid config (param names the field), bad struct_size */
  vr_router* router = NULL;
  CHECK(vr_router_create_from_json("{", 1, NULL, &router) == VR_CONFIG); /* config errors are VR_CONFIG */
  CHECK(router == NULL);
  CHECK(strlen(vr_last_error()) > 0);
  const char* bad = "{\"models\":[{\"name\":\"a\",\"endpoints\":[\"ftp://x\"]}]}";
  CHECK(vr_router_create_from_json(bad, strlen(bad), NULL, &router) == VR_CONFIG);
  CHECK(strstr(vr_last_error_param(), "models[0].endpoints[0]") != NULL);
  {
    pthread_t t;
    void* result = NULL;
    pthread_create(&t, NULL, error_in_other_thread, NULL);
    pthread_join(t, &result);
    CHECK(result != NULL); /* thread-local */
  }
  vr_router_options small = VR_ROUTER_OPTIONS_INIT;
  small.struct_size = 4;
  CHECK(vr_router_create_from_json("{}", 2, &small, &router) == VR_INVALID_ARGUMENT);

  /* a router with an observer and a custom policy used by name */
  char config[1024];
  snprintf(config, sizeof config,
           "{\"models\":["
           "{\"name\":\"facebook/opt-125m\",\"aliases\":[\"opt\"],\"endpoints\":[\"%s\"]},"
           "{\"name\":\"two\",\"policy\":\"pick_last\","
           "\"endpoints\":[\"http://127.0.0.1:9\",\"http://127.0.0.1:10\"]}]}",
           url);
  observed obs;
  memset(&obs, 0, sizeof obs);
  pthread_mutex_init(&obs.mutex, NULL);
  int policy_calls = 0;
  vr_policy policy = VR_POLICY_INIT;
  policy.name = "pick_last";
  policy.pick = pick_last;
  policy.user = &policy_calls;
  vr_router_options options = VR_ROUTER_OPTIONS_INIT;
  options.seed = 7;
  options.policies = &policy;
  options.policy_count = 1;
  options.on_outcome = on_outcome;
  options.observer_user = &obs;
  CHECK(vr_router_create_from_json(config, strlen(config), &options, &router) == VR_OK);
  if (router == NULL) return 1;
  CHECK(strcmp(vr_last_error(), "") == 0);

  /* route: alias resolves, body rewritten, lease completed -> observer */
  const char* body = "{\"model\":\"opt\",\"prompt\":\"hello\"}";
  vr_lease* lease = NULL;
  CHECK(vr_route(router, body, strlen(body), NULL, &lease) == VR_OK);
  if (lease != NULL) {
    CHECK(strcmp(vr_lease_endpoint_url(lease), url) == 0);
    CHECK(strcmp(vr_lease_model(lease), "facebook/opt-125m") == 0);
    CHECK(strcmp(vr_lease_api_key(lease), "") == 0);
    size_t size = 0;
    const char* rewritten = vr_lease_rewritten_body(lease, &size);
    CHECK(rewritten != NULL && size > 0 && strstr(rewritten, "\"facebook/opt-125m\"") != NULL);
    vr_outcome outcome = VR_OUTCOME_INIT;
    outcome.status = 200;
    outcome.bytes = 42;
    CHECK(vr_lease_complete(lease, &outcome) == VR_OK);
  }
  CHECK(obs.outcomes == 1 && obs.successes == 1 && obs.last_status == 200);

  /* the served name needs no rewrite */
  const char* direct = "{\"model\":\"facebook/opt-125m\",\"prompt\":\"hello\"}";
  CHECK(vr_route(router, direct, strlen(direct), NULL, &lease) == VR_OK);
  if (lease != NULL) {
    size_t size = 1;
    CHECK(vr_lease_rewritten_body(lease, &size) == NULL && size == 0);
    vr_lease_cancel(lease);
  }
  CHECK(obs.cancelled == 1);

  /* custom policy by name: always the last of two */
  const char* two = "{\"model\":\"two\"}";
  for (int i = 0; i < 3; ++i) {
    CHECK(vr_route(router, two, strlen(two), NULL, &lease) == VR_OK);
    if (lease != NULL) {
      CHECK(strcmp(vr_lease_endpoint_url(lease), "http://127.0.0.1:10") == 0);
      vr_lease_cancel(lease);
    }
  }
  CHECK(policy_calls == 3);

  /* exclude: nothing left */
  const char* excluded[] = {"http://127.0.0.1:9", "http://127.0.0.1:10"};
  vr_route_options route_options = VR_ROUTE_OPTIONS_INIT;
  route_options.exclude = excluded;
  route_options.exclude_count = 2;
  CHECK(vr_route(router, two, strlen(two), &route_options, &lease) == VR_NO_ENDPOINT);
  CHECK(lease == NULL);

  /* routing errors */
  const char* unknown = "{\"model\":\"nope\"}";
  CHECK(vr_route(router, unknown, strlen(unknown), NULL, &lease) == VR_UNKNOWN_MODEL);
  CHECK(strstr(vr_last_error(), "nope") != NULL);
  CHECK(strcmp(vr_last_error_param(), "model") == 0);
  CHECK(vr_route(router, "[1", 2, NULL, &lease) == VR_INVALID_JSON);
  CHECK(vr_route(router, "{}", 2, NULL, &lease) == VR_MISSING_MODEL);
  CHECK(vr_route(NULL, "{}", 2, NULL, &lease) == VR_INVALID_ARGUMENT);

  /* forward a streamed chat completion: head, then one chunk per SSE event */
  const char* chat =
      "{\"model\":\"opt\",\"stream\":true,\"max_tokens\":5,"
      "\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}";
  vr_header headers[] = {{"X-Request-Id", "c-api-test-1"}, {"x-sim-itl-ms", "10"}};
  vr_forward_request request = VR_FORWARD_REQUEST_INIT;
  request.path = "/v1/chat/completions";
  request.body = chat;
  request.body_len = strlen(chat);
  request.headers = headers;
  request.header_count = 2;
  collected got;
  memset(&got, 0, sizeof got);
  vr_forward_callbacks callbacks = VR_FORWARD_CALLBACKS_INIT;
  callbacks.on_head = on_head;
  callbacks.on_chunk = on_chunk;
  callbacks.user = &got;
  const int before = obs.successes;
  CHECK(vr_forward(router, &request, &callbacks) == VR_OK);
  CHECK(got.heads == 1 && got.status == 200 && got.is_event_stream);
  CHECK(got.chunks >= 2);
  CHECK(strstr(got.body, "tok4") != NULL);
  CHECK(strstr(got.body, "chatcmpl-c-api-test-1") != NULL);
  CHECK(strstr(got.body, "data: [DONE]") != NULL);
  CHECK(obs.successes == before + 1);

  /* a callback that stops the stream cancels it */
  memset(&got, 0, sizeof got);
  got.stop_after = 1;
  CHECK(vr_forward(router, &request, &callbacks) == VR_CANCELLED);
  CHECK(got.chunks == 1);

  /* unknown model: no callback runs */
  const char* unknown_chat = "{\"model\":\"nope\",\"messages\":[]}";
  request.body = unknown_chat;
  request.body_len = strlen(unknown_chat);
  memset(&got, 0, sizeof got);
  CHECK(vr_forward(router, &request, &callbacks) == VR_UNKNOWN_MODEL);
  CHECK(got.heads == 0);

  /* an upstream error status is relayed, not a failure */
  const char* too_long = "{\"model\":\"opt\",\"prompt\":\"x\",\"max_tokens\":100000}";
  request.path = "/v1/completions";
  request.body = too_long;
  request.body_len = strlen(too_long);
  memset(&got, 0, sizeof got);
  CHECK(vr_forward(router, &request, &callbacks) == VR_OK);
  CHECK(got.status == 400 && strstr(got.body, "\"error\"") != NULL);

  /* a per-call deadline and a cancel from another thread (the sim holds its first byte 3 s) */
  {
    vr_header slow = {"x-sim-ttft-ms", "3000"};
    const char* plain = "{\"model\":\"opt\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    vr_forward_request timed = request;
    timed.path = "/v1/chat/completions";
    timed.body = plain; /* not streamed: nothing comes before the first token */
    timed.body_len = strlen(plain);
    timed.headers = &slow;
    timed.header_count = 1;
    timed.timeout_ms = 200;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&got, 0, sizeof got);
    CHECK(vr_forward(router, &timed, &callbacks) == VR_TIMEOUT);
    CHECK(seconds_since(&t0) < 2.0);
    CHECK(got.heads == 0);

    vr_cancel* cancel = NULL;
    CHECK(vr_cancel_create(&cancel) == VR_OK);
    timed.timeout_ms = 0;
    timed.cancel = cancel;
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, cancel);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(vr_forward(router, &timed, &callbacks) == VR_CANCELLED);
    CHECK(seconds_since(&t0) < 2.0);
    pthread_join(t, NULL);
    vr_cancel_destroy(cancel);
    vr_cancel_trigger(NULL);
  }

  /* update: only refusing endpoints left -> connect failures retried, then VR_CONNECT_FAILED */
  const char* dead = "{\"models\":[{\"name\":\"facebook/opt-125m\",\"aliases\":[\"opt\"],"
                     "\"endpoints\":[\"http://127.0.0.1:9\",\"http://127.0.0.1:10\"]}]}";
  CHECK(vr_router_update_json(router, dead, strlen(dead)) == VR_OK);
  CHECK(vr_router_update_json(router, "{", 1) == VR_CONFIG); /* old table stays */
  request.path = "/v1/chat/completions";
  request.body = chat;
  request.body_len = strlen(chat);
  memset(&got, 0, sizeof got);
  const int refused_before = obs.connect_failures;
  CHECK(vr_forward(router, &request, &callbacks) == VR_CONNECT_FAILED);
  CHECK(obs.connect_failures == refused_before + 2);
  CHECK(got.heads == 0);

  /* a lease may outlive its router handle */
  CHECK(vr_route(router, direct, strlen(direct), NULL, &lease) == VR_OK);
  vr_router_destroy(router);
  if (lease != NULL) {
    CHECK(strcmp(vr_lease_endpoint_url(lease), "http://127.0.0.1:9") == 0 ||
          strcmp(vr_lease_endpoint_url(lease), "http://127.0.0.1:10") == 0);
    CHECK(vr_lease_complete(lease, NULL) == VR_OK);
  }
  vr_router_destroy(NULL);
  vr_lease_cancel(NULL);

  /* a caller built against 0.1's smaller vr_forward_request still works (struct_size versioning) */
  {
    const char* v01 = "{\"models\":[{\"name\":\"m\",\"endpoints\":[\"http://127.0.0.1:9\"]}]}";
    vr_router* old_router = NULL;
    CHECK(vr_router_create_from_json(v01, strlen(v01), NULL, &old_router) == VR_OK);
    vr_forward_request old = VR_FORWARD_REQUEST_INIT;
    old.struct_size = offsetof(vr_forward_request, timeout_ms);
    old.path = "/v1/completions";
    old.body = "{\"model\":\"m\"}";
    old.body_len = strlen(old.body);
    CHECK(vr_forward(old_router, &old, NULL) == VR_CONNECT_FAILED); /* read, routed, refused */
    vr_router_destroy(old_router);
  }

  /* bad struct sizes are refused, not read past */
  vr_forward_request tiny = VR_FORWARD_REQUEST_INIT;
  tiny.struct_size = 8;
  CHECK(vr_forward(NULL, &tiny, NULL) == VR_INVALID_ARGUMENT);

  pthread_mutex_destroy(&obs.mutex);
  if (failures == 0) printf("C API: all checks passed (vllm_router %s)\n", vr_version());
  return failures == 0 ? 0 : 1;
}
