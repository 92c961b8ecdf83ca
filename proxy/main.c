/*
 * sluice — the command line.
 *
 *   sluice [run] -c FILE [--workers N] [--log-level LEVEL]
 *   sluice check -c FILE [--print] [--strict]
 *   sluice explain -c FILE [--ip A] [--header 'K: V']... [--method M] PATH
 *   sluice version | --version | -V
 *   sluice help | --help | -h
 *   sluice sleep SECONDS      (a preStop hook for an image without a shell)
 *
 * Exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure.
 * Everything past argument parsing is in the library (libsluice.a):
 * sl_run (admin/process.c), sl_cmd_check and sl_cmd_explain
 * (admin/commands.c).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#include "sluice/log.h"
#include "admin/build_info.h"
#include "admin/commands.h"
#include "admin/process.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: sluice [run] -c FILE [--workers N] [--log-level debug|info|warn|error]\n"
          "       sluice check -c FILE [--print] [--strict]\n"
          "       sluice explain -c FILE [--ip A] [--method M] [--header 'K: V']... PATH\n"
          "       sluice version | --version | -V\n"
          "       sluice help | --help | -h\n"
          "       sluice sleep SECONDS\n");
}

static void help(void) {
  usage(stdout);
  fputs("\n"
        "commands:\n"
        "  run       serve: the listeners, the admin API, hot reload (SIGHUP, POST /reload,\n"
        "            the watched files); the default command\n"
        "  check     validate a configuration and its drop-ins (FILE:LINE:COL errors, exit 1);\n"
        "            --print shows it normalised, --strict makes warnings (expired entries) errors\n"
        "  explain   the verdict a request would get, policy by policy, without sending it\n"
        "  version   the version, the commit built from, and the libraries\n"
        "  sleep     wait SECONDS (0..3600) and exit 0: a Kubernetes preStop hook in the\n"
        "            runtime image, which has no shell and no sleep(1)\n"
        "\n"
        "options:\n"
        "  -c, --config FILE   the main YAML file (its `include` names the drop-in directory)\n"
        "  -w, --workers N     worker threads [one per available CPU]\n"
        "  -l, --log-level L   debug, info [default], warn or error\n"
        "\n"
        "exit codes: 0 ok, 1 invalid configuration or usage, 2 runtime failure\n",
        stdout);
}

/* `sluice sleep SECONDS`: the whole seconds, through signals that
 * interrupt nanosleep. */
static int sleep_for(int argc, char **argv) {
  char *end = NULL;
  long s = argc == 3 ? strtol(argv[2], &end, 10) : -1;
  if (argc != 3 || !end || *end || end == argv[2] || s < 0 || s > 3600) {
    fprintf(stderr, "sluice sleep: give one number of seconds, 0 to 3600\n");
    return 1;
  }
  struct timespec left = {.tv_sec = s, .tv_nsec = 0};
  while (nanosleep(&left, &left) != 0 && errno == EINTR) {
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *cmd = "run";
  int argi = 1;
  if (argc > 1 && argv[1][0] != '-') {
    cmd = argv[1];
    argi = 2;
  }
  /* Asked as the first word, with or without dashes. */
  const char *first = argc > 1 ? argv[1] : "";
  if (!strcmp(first, "version") || !strcmp(first, "--version") || !strcmp(first, "-V")) {
    sl_build_info_print(stdout);
    return 0;
  }
  if (!strcmp(first, "help") || !strcmp(first, "--help") || !strcmp(first, "-h")) {
    help();
    return 0;
  }
  if (!strcmp(first, "sleep")) return sleep_for(argc, argv);
  if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && strcmp(cmd, "explain") != 0) {
    fprintf(stderr, "sluice: unknown command '%s'\n", cmd);
    usage(stderr);
    return 1;
  }
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"workers", required_argument, NULL, 'w'},
      {"log-level", required_argument, NULL, 'l'}, {"print", no_argument, NULL, 'p'},
      {"strict", no_argument, NULL, 's'},
      {"ip", required_argument, NULL, 'i'},     {"header", required_argument, NULL, 'H'},
      {"method", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config = NULL, *ip = NULL, *method = "GET";
  const char *hdrs[64];
  int n_hdrs = 0, workers = 0;
  bool print = false, strict = false;
  optind = argi;
  int ch;
  while ((ch = getopt_long(argc, argv, "c:w:l:H:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      config = optarg;
      break;
    case 'w': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 1 || v > 256) {
        fprintf(stderr, "sluice: --workers wants a number from 1 to 256, got '%s'\n", optarg);
        return 1;
      }
      workers = (int)v;
      break;
    }
    case 'l':
      if (sl_log_level_parse(optarg, &sl_log_min_level) != 0) {
        fprintf(stderr, "sluice: unknown log level '%s'\n", optarg);
        return 1;
      }
      break;
    case 'p':
      print = true;
      break;
    case 's':
      strict = true;
      break;
    case 'i':
      ip = optarg;
      break;
    case 'H':
      if (n_hdrs < 64) hdrs[n_hdrs++] = optarg;
      break;
    case 'm':
      method = optarg;
      break;
    case 'h':
      help();
      return 0;
    default:
      usage(stderr);
      return 1;
    }
  }
  if (!config) {
    fprintf(stderr, "sluice: -c FILE is required\n");
    usage(stderr);
    return 1;
  }
  if (strcmp(cmd, "check") == 0) return sl_cmd_check_with(config, &(struct sl_check_opts){.print = print, .strict = strict});
  if (strcmp(cmd, "explain") == 0) {
    if (optind != argc - 1) {
      fprintf(stderr, "sluice explain: give exactly one request PATH\n");
      usage(stderr);
      return 1;
    }
    return sl_cmd_explain(config, method, ip, hdrs, n_hdrs, argv[optind]);
  }
  if (optind != argc) {
    fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 1;
  }
  struct sl_run_opts run = {.config_path = config, .workers = workers};
  return sl_run(&run);
}
