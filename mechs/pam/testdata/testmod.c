/*
 * testmod: a PAM module for saslgate's tests. Its "mode=" option picks
 * the behaviour of pam_sm_authenticate:
 *
 *   crash  user "crash" writes through NULL, "abort" calls abort(),
 *          "exit" calls _exit(3), "hang" sleeps hang=SECONDS (default
 *          3600); everyone else: PAM_IGNORE
 *   rhost  writes PAM_RHOST (or "(unset)") to out=FILE; PAM_IGNORE
 *   conv   holds a conversation and checks saslauthd's answers:
 *          variant=normal     PAM_USER_PROMPT set; info, error, the user
 *                             prompt, another visible prompt and two
 *                             hidden prompts in one call
 *          variant=unsetprompt PAM_USER_PROMPT unset; visible prompts ""
 *                             and "login: " must get no login
 *          variant=badstyle   a message of style=N (default 99, an
 *                             unknown style; 7 is PAM_BINARY_PROMPT) must
 *                             fail the conversation
 *          pw=PASSWORD the hidden prompts must get
 *          PAM_SUCCESS when every answer is right, else PAM_AUTH_ERR (or
 *          the conversation's error)
 */
#define PAM_SM_AUTH
#define PAM_SM_ACCOUNT
#include <security/pam_appl.h>
#include <security/pam_modules.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *opt(int argc, const char **argv, const char *key)
{
	size_t n = strlen(key);
	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=')
			return argv[i] + n + 1;
	return NULL;
}

static int eq(const char *a, const char *b)
{
	if (a == NULL)
		a = "";
	if (b == NULL)
		b = "";
	return strcmp(a, b) == 0;
}

static void drop(struct pam_response *resp, int n)
{
	if (resp == NULL)
		return;
	for (int i = 0; i < n; i++)
		free(resp[i].resp);
	free(resp);
}

static int converse(pam_handle_t *pamh, int n, const struct pam_message *msgs, struct pam_response **resp)
{
	const struct pam_conv *conv = NULL;
	int rc = pam_get_item(pamh, PAM_CONV, (const void **)&conv);
	if (rc != PAM_SUCCESS || conv == NULL || conv->conv == NULL)
		return PAM_CONV_ERR;
	const struct pam_message *ptrs[8];
	for (int i = 0; i < n; i++)
		ptrs[i] = &msgs[i];
	*resp = NULL;
	return conv->conv(n, ptrs, resp, conv->appdata_ptr);
}

static int conv_test(pam_handle_t *pamh, const char *user, int argc, const char **argv)
{
	const char *variant = opt(argc, argv, "variant");
	const char *pw = opt(argc, argv, "pw");
	struct pam_response *resp = NULL;
	int rc, ok = 1;

	if (variant == NULL || strcmp(variant, "normal") == 0) {
		pam_set_item(pamh, PAM_USER_PROMPT, "Who are you? ");
		struct pam_message m[6] = {
			{PAM_TEXT_INFO, "hello"},
			{PAM_ERROR_MSG, "careful"},
			{PAM_PROMPT_ECHO_ON, "Who are you? "},
			{PAM_PROMPT_ECHO_ON, "Favourite colour? "},
			{PAM_PROMPT_ECHO_OFF, "Password: "},
			{PAM_PROMPT_ECHO_OFF, "One-time code: "},
		};
		rc = converse(pamh, 6, m, &resp);
		if (rc != PAM_SUCCESS)
			return rc;
		ok = resp != NULL && eq(resp[0].resp, "") && eq(resp[1].resp, "") &&
		     eq(resp[2].resp, user) && eq(resp[3].resp, "") &&
		     eq(resp[4].resp, pw) && eq(resp[5].resp, pw);
		drop(resp, 6);
	} else if (strcmp(variant, "unsetprompt") == 0) {
		pam_set_item(pamh, PAM_USER_PROMPT, NULL);
		struct pam_message m[2] = {
			{PAM_PROMPT_ECHO_ON, ""},
			{PAM_PROMPT_ECHO_ON, "login: "},
		};
		rc = converse(pamh, 2, m, &resp);
		if (rc != PAM_SUCCESS)
			return rc;
		ok = resp != NULL && eq(resp[0].resp, "") && eq(resp[1].resp, "");
		drop(resp, 2);
	} else if (strcmp(variant, "badstyle") == 0) {
		const char *st = opt(argc, argv, "style");
		struct pam_message m[2] = {
			{PAM_PROMPT_ECHO_OFF, "Password: "},
			{st ? atoi(st) : 99, "what is this?"},
		};
		rc = converse(pamh, 2, m, &resp);
		drop(resp, 2);
		return rc == PAM_SUCCESS ? PAM_AUTH_ERR : rc;
	}
	return ok ? PAM_SUCCESS : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)flags;
	const char *user = NULL;
	if (pam_get_item(pamh, PAM_USER, (const void **)&user) != PAM_SUCCESS || user == NULL)
		return PAM_USER_UNKNOWN;
	const char *mode = opt(argc, argv, "mode");
	if (mode == NULL)
		return PAM_IGNORE;

	if (strcmp(mode, "crash") == 0) {
		if (strcmp(user, "crash") == 0) {
			volatile int *p = NULL;
			*p = 1;
		}
		if (strcmp(user, "abort") == 0)
			abort();
		if (strcmp(user, "exit") == 0)
			_exit(3);
		if (strcmp(user, "hang") == 0) {
			const char *s = opt(argc, argv, "hang");
			unsigned secs = s ? (unsigned)atoi(s) : 3600;
			while (secs > 0)
				secs = sleep(secs);
		}
		return PAM_IGNORE;
	}
	if (strcmp(mode, "rhost") == 0) {
		const char *rhost = NULL;
		pam_get_item(pamh, PAM_RHOST, (const void **)&rhost);
		const char *out = opt(argc, argv, "out");
		FILE *f = out ? fopen(out, "w") : NULL;
		if (f == NULL)
			return PAM_SYSTEM_ERR;
		fputs(rhost ? rhost : "(unset)", f);
		fclose(f);
		return PAM_IGNORE;
	}
	if (strcmp(mode, "conv") == 0)
		return conv_test(pamh, user, argc, argv);
	return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh; (void)flags; (void)argc; (void)argv;
	return PAM_IGNORE;
}

PAM_EXTERN int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh; (void)flags; (void)argc; (void)argv;
	return PAM_IGNORE;
}
