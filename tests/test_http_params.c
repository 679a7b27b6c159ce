/* White-box tests of the HTTP gateway's request parsing (gateway/http_params.c): JSON and form
 * bodies, base64, the seconds -> frames rule, and the errors that name the field. The black-box
 * API tests are tests/it_http.sh. */
#include <stdlib.h>
#include <string.h>

#include "gateway/http_params.c" /* a gateway/ source: test binaries link only libwanserve.a */
#include "tests/testlib.h"

static int parse(const char *json, job_params *p, ws_err *err) {
  return job_params_from_json(json, strlen(json), p, err);
}

static void test_http_params_json_fields(void) {
  job_params p;
  ws_err err = {0};
  CHECK_OK(parse("{\"prompt\":\"a fox\",\"negative_prompt\":\"blur\",\"size\":\"832x480\","
                 "\"frames\":81,\"fps\":16,\"steps\":40,\"seed\":7,\"guidance\":3.5,"
                 "\"guide_scale_low\":2,\"solver\":\"dpmpp\",\"shift\":5,\"boundary\":0.9,"
                 "\"deadline_ms\":60000,\"model\":\"wan2.2-t2v\"}",
                 &p, &err),
           err);
  CHECK(p.prompt && !strcmp(p.prompt, "a fox"));
  CHECK(p.negative && !strcmp(p.negative, "blur"));
  CHECK_EQ_INT(p.width, 832);
  CHECK_EQ_INT(p.height, 480);
  CHECK_EQ_INT(p.frames, 81);
  CHECK_EQ_INT(p.steps, 40);
  CHECK_EQ_INT(p.seed, 7);
  CHECK_NEAR(p.guide_high, 3.5, 0); /* guidance sets both ... */
  CHECK_NEAR(p.guide_low, 2, 0);    /* ... an explicit per-expert scale wins */
  CHECK_EQ_INT(p.solver, 2);
  CHECK_NEAR(p.boundary, 0.9, 1e-6);
  CHECK_EQ_INT(p.deadline_ms, 60000);
  CHECK_EQ_INT(p.task, 1); /* no image: t2v */
  job_params_free(&p);
  CHECK_OK(parse("{\"prompt\":\"x\"}", &p, &err), err);
  CHECK_EQ_INT(p.seed, -1); /* absent = random */
  CHECK_EQ_INT(p.width, 0); /* 0 = the router's default */
  job_params_free(&p);
}

static void test_http_params_seconds_to_frames(void) {
  job_params p;
  ws_err err = {0};
  CHECK_OK(parse("{\"prompt\":\"x\",\"seconds\":5}", &p, &err), err);
  CHECK_EQ_INT(p.frames, 81); /* 5 s * 16 fps = 80 -> 4n+1 */
  job_params_free(&p);
  CHECK_OK(parse("{\"prompt\":\"x\",\"seconds\":\"4\",\"fps\":24}", &p, &err), err);
  CHECK_EQ_INT(p.frames, 97); /* OpenAI clients send seconds as a string */
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"seconds\":4,\"frames\":81}", &p, &err), WS_EINVAL, err,
            "not both");
  job_params_free(&p);
}

static void test_http_params_image_and_task(void) {
  job_params p;
  ws_err err = {0};
  CHECK_OK(parse("{\"prompt\":\"x\",\"image\":\"data:image/png;base64,iVBORw0KGgo=\"}", &p, &err),
           err);
  CHECK_EQ_INT(p.image_len, 8);
  CHECK(p.image && !memcmp(p.image, "\x89PNG\r\n\x1a\n", 8));
  CHECK_EQ_INT(p.task, 2); /* an image makes it i2v */
  job_params_free(&p);
  CHECK_OK(parse("{\"prompt\":\"x\",\"image\":\"iVBORw0KGgo\",\"task\":\"t2v\"}", &p, &err), err);
  CHECK_EQ_INT(p.task, 1); /* explicit task stays (the router then refuses the image) */
  CHECK_EQ_INT(p.image_len, 8);
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"image\":\"not base64!\"}", &p, &err), WS_EINVAL, err,
            "image");
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"image\":\"data:image/png,abc\"}", &p, &err), WS_EINVAL, err,
            "base64");
  job_params_free(&p);
}

static void test_http_params_errors_name_the_field(void) {
  struct {
    const char *json, *needle;
  } bad[] = {{"{\"prompt\":", "invalid JSON"},
             {"[]", "JSON object"},
             {"{}", "prompt: required"},
             {"{\"prompt\":\"\"}", "prompt: required"},
             {"{\"prompt\":7}", "prompt: must be a string"},
             {"{\"prompt\":\"x\",\"steps\":\"many\"}", "steps"},
             {"{\"prompt\":\"x\",\"steps\":2.5}", "steps: 2.5 is not an integer"},
             {"{\"prompt\":\"x\",\"steps\":0}", "steps"},
             {"{\"prompt\":\"x\",\"size\":\"64\"}", "size"},
             {"{\"prompt\":\"x\",\"size\":\"64x64x3\"}", "size"},
             {"{\"prompt\":\"x\",\"size\":\"64x64\",\"width\":64}", "not both"},
             {"{\"prompt\":\"x\",\"width\":64}", "give both"},
             {"{\"prompt\":\"x\",\"solver\":\"euler\"}", "solver"},
             {"{\"prompt\":\"x\",\"task\":\"v2v\"}", "task"},
             {"{\"prompt\":\"x\",\"boundary\":2}", "boundary"},
             {"{\"prompt\":\"x\",\"seed\":-2}", "seed"},
             {"{\"prompt\":\"x\",\"colour\":1}", "unknown field 'colour'"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    job_params p;
    ws_err err = {0};
    CHECK_ERR(parse(bad[i].json, &p, &err), WS_EINVAL, err, bad[i].needle);
    job_params_free(&p);
  }
}

static void test_http_params_form(void) {
  http_field f[] = {{"prompt", (uint8_t *)"a fox", 5, 0},
                    {"size", (uint8_t *)"64x64", 5, 0},
                    {"steps", (uint8_t *)"12", 2, 0},
                    {"guidance", (uint8_t *)"", 0, 0}, /* empty input = not given */
                    {"image", (uint8_t *)"\x89PNG", 4, 1}};
  job_params p;
  ws_err err = {0};
  CHECK_OK(job_params_from_form(f, 5, &p, &err), err);
  CHECK(p.prompt && !strcmp(p.prompt, "a fox"));
  CHECK_EQ_INT(p.width, 64);
  CHECK_EQ_INT(p.steps, 12);
  CHECK_NEAR(p.guide_high, 0, 0);
  CHECK_EQ_INT(p.image_len, 4);
  CHECK_EQ_INT(p.task, 2);
  job_params_free(&p);
  http_field g[] = {{"prompt", (uint8_t *)"x", 1, 0}, {"steps", (uint8_t *)"1e9x", 4, 0}};
  CHECK_ERR(job_params_from_form(g, 2, &p, &err), WS_EINVAL, err, "steps");
  job_params_free(&p);
  http_field h[] = {{"prompt", (uint8_t *)"x", 1, 1}};
  CHECK_ERR(job_params_from_form(h, 1, &p, &err), WS_EINVAL, err, "only 'image' may be a file");
  job_params_free(&p);
}

/* euler_distill's fields: the step list from a JSON array or a form's comma list, each entry
 * checked and named; the solver name shows in the job as given. */
static void test_http_params_distill(void) {
  job_params p;
  ws_err err = {0};
  CHECK_OK(parse("{\"prompt\":\"x\",\"solver\":\"euler_distill\",\"denoising_step_list\":"
                 "[1000,750,500,250],\"boundary_step_index\":2}",
                 &p, &err),
           err);
  CHECK_EQ_INT(p.solver, 3);
  CHECK_EQ_INT(p.n_step_list, 4);
  CHECK(p.n_step_list == 4 && p.step_list[0] == 1000 && p.step_list[3] == 250);
  CHECK_EQ_INT(p.boundary_step, 2);
  job_params_free(&p);
  http_field f[] = {{"prompt", (uint8_t *)"x", 1, 0},
                    {"denoising_step_list", (uint8_t *)"999,500", 7, 0}};
  CHECK_OK(job_params_from_form(f, 2, &p, &err), err);
  CHECK(p.n_step_list == 2 && p.step_list[0] == 999 && p.step_list[1] == 500);
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"denoising_step_list\":[1000,1001]}", &p, &err), WS_EINVAL,
            err, "denoising_step_list");
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"denoising_step_list\":\"1000\"}", &p, &err), WS_EINVAL, err,
            "array");
  job_params_free(&p);
  http_field g[] = {{"prompt", (uint8_t *)"x", 1, 0},
                    {"denoising_step_list", (uint8_t *)"999,abc", 7, 0}};
  CHECK_ERR(job_params_from_form(g, 2, &p, &err), WS_EINVAL, err, "denoising_step_list");
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"solver\":\"lcm\"}", &p, &err), WS_EINVAL, err,
            "euler_distill");
  job_params_free(&p);
}

/* Per-request adapters by name and strength, per expert. */
static void test_http_params_adapters(void) {
  job_params p;
  ws_err err = {0};
  CHECK_OK(parse("{\"prompt\":\"x\",\"adapter_low\":\"style\",\"adapter_low_strength\":0.6,"
                 "\"adapter_high\":\"motion\"}",
                 &p, &err),
           err);
  CHECK(p.adapter[1] && !strcmp(p.adapter[1], "style"));
  CHECK(p.adapter[0] && !strcmp(p.adapter[0], "motion"));
  CHECK_NEAR(p.adapter_s[1], 0.6, 1e-6);
  CHECK_NEAR(p.adapter_s[0], 0, 0);
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"adapter_low_strength\":1000}", &p, &err), WS_EINVAL, err,
            "adapter_low_strength");
  job_params_free(&p);
  CHECK_ERR(parse("{\"prompt\":\"x\",\"adapter_high\":3}", &p, &err), WS_EINVAL, err,
            "adapter_high");
  job_params_free(&p);
}

static void test_http_base64(void) {
  static const struct {
    const char *in, *out;
  } v[] = {{"", ""},           {"Zg==", "f"},           {"Zm8=", "fo"},        {"Zm9v", "foo"},
           {"Zm9vYg", "foob"}, {"Zm9v\nYmE=", "fooba"}, {"Zm9vYmFy", "foobar"}};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint8_t *out = NULL;
    size_t n = 0;
    ws_err err = {0};
    CHECK_OK(http_base64_decode(v[i].in, strlen(v[i].in), &out, &n, &err), err);
    CHECK_EQ_INT(n, strlen(v[i].out));
    CHECK(out && !memcmp(out, v[i].out, n));
    free(out);
  }
  uint8_t *out = NULL;
  size_t n = 0;
  ws_err err = {0};
  CHECK_ERR(http_base64_decode("Zg==Zg", 6, &out, &n, &err), WS_EINVAL, err, "after '='");
  CHECK_ERR(http_base64_decode("Z", 1, &out, &n, &err), WS_EINVAL, err, "truncated");
}

int main(void) {
  TEST_RUN(test_http_params_json_fields);
  TEST_RUN(test_http_params_seconds_to_frames);
  TEST_RUN(test_http_params_image_and_task);
  TEST_RUN(test_http_params_errors_name_the_field);
  TEST_RUN(test_http_params_form);
  TEST_RUN(test_http_params_distill);
  TEST_RUN(test_http_params_adapters);
  TEST_RUN(test_http_base64);
  return test_summary();
}
