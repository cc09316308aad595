/*
 * A freeDiameter extension that answers Gq' (ETSI TS 183 017) AAR and STR
 * with DIAMETER_SUCCESS, for hostednat's interoperability tests.
 *
 * It defines what freeDiameter must know to parse hostednat's requests:
 * vendors 10415 (3GPP) and 13019 (ETSI), application 16777222, the AA and
 * ST commands, and the 3GPP, ETSI and NASREQ AVPs they carry (AVPs with the
 * M flag that are missing from the dictionary would be refused with 5001).
 * It advertises {10415, 16777222} so that the CEA names the application.
 *
 * Built by tests/diameter/test_freediameter.py:
 *   gcc -shared -fPIC -o gq_answer.fdx gq_answer.c -lfdcore -lfdproto
 */

#include <freeDiameter/extension.h>

static struct dict_object *gq_app;

static struct dict_object *vendor(vendor_id_t id, char *name)
{
	struct dict_object *found = NULL;
	struct dict_vendor_data data = { id, name };

	if (fd_dict_search(fd_g_config->cnf_dict, DICT_VENDOR, VENDOR_BY_ID,
			   &id, &found, ENOENT) == 0)
		return found;
	CHECK_FCT_DO(fd_dict_new(fd_g_config->cnf_dict, DICT_VENDOR, &data,
				 NULL, &found), return NULL);
	return found;
}

static void avp(avp_code_t code, vendor_id_t vendor_id, char *name,
		enum dict_avp_basetype type)
{
	struct dict_avp_request_ex query;
	struct dict_object *found = NULL;
	/* Only the V flag is fixed: hostednat and other SPDFs differ on M. */
	struct dict_avp_data data = {
		code, vendor_id, name, AVP_FLAG_VENDOR,
		vendor_id ? AVP_FLAG_VENDOR : 0, type
	};

	memset(&query, 0, sizeof(query));
	query.avp_vendor.vendor_id = vendor_id;
	query.avp_data.avp_code = code;
	if (vendor_id == 0) {
		if (fd_dict_search(fd_g_config->cnf_dict, DICT_AVP, AVP_BY_CODE,
				   &code, &found, ENOENT) == 0)
			return;
	} else if (fd_dict_search(fd_g_config->cnf_dict, DICT_AVP,
				  AVP_BY_STRUCT, &query, &found, ENOENT) == 0) {
		return;
	}
	CHECK_FCT_DO(fd_dict_new(fd_g_config->cnf_dict, DICT_AVP, &data,
				 NULL, NULL), );
}

static struct dict_object *command(command_code_t code, char *request,
				   char *answer)
{
	struct dict_object *found = NULL;
	struct dict_cmd_data req = {
		code, request, CMD_FLAG_REQUEST | CMD_FLAG_ERROR,
		CMD_FLAG_REQUEST
	};
	struct dict_cmd_data ans = {
		code, answer, CMD_FLAG_REQUEST, 0
	};

	if (fd_dict_search(fd_g_config->cnf_dict, DICT_COMMAND, CMD_BY_CODE_R,
			   &code, &found, ENOENT) == 0)
		return found;
	CHECK_FCT_DO(fd_dict_new(fd_g_config->cnf_dict, DICT_COMMAND, &req,
				 gq_app, &found), return NULL);
	CHECK_FCT_DO(fd_dict_new(fd_g_config->cnf_dict, DICT_COMMAND, &ans,
				 gq_app, NULL), return NULL);
	return found;
}

static int answer_success(struct msg **msg, struct avp *unused,
			  struct session *session, void *opaque,
			  enum disp_action *action)
{
	struct msg *answer;
	struct avp *application;
	struct dict_object *model = NULL;
	union avp_value value;

	CHECK_FCT(fd_msg_new_answer_from_req(fd_g_config->cnf_dict, msg, 0));
	answer = *msg;
	CHECK_FCT(fd_dict_search(fd_g_config->cnf_dict, DICT_AVP, AVP_BY_NAME,
				 "Auth-Application-Id", &model, ENOENT));
	CHECK_FCT(fd_msg_avp_new(model, 0, &application));
	value.u32 = 16777222;
	CHECK_FCT(fd_msg_avp_setvalue(application, &value));
	CHECK_FCT(fd_msg_avp_add(answer, MSG_BRW_LAST_CHILD, application));
	CHECK_FCT(fd_msg_rescode_set(answer, "DIAMETER_SUCCESS", NULL, NULL, 1));
	/* Sent: *msg is now NULL and the dispatch stops here. */
	CHECK_FCT(fd_msg_send(msg, NULL, NULL));
	return 0;
}

static int gq_answer_entry(char *conffile)
{
	struct dict_object *tgpp, *etsi, *aar, *str;
	struct dict_application_data app = { 16777222, "Gq" };
	struct disp_when when;

	tgpp = vendor(10415, "3GPP");
	etsi = vendor(13019, "ETSI");
	if (tgpp == NULL || etsi == NULL)
		return EINVAL;
	CHECK_FCT(fd_dict_new(fd_g_config->cnf_dict, DICT_APPLICATION, &app,
			      tgpp, &gq_app));

	avp(8, 0, "Framed-IP-Address", AVP_TYPE_OCTETSTRING);
	avp(97, 0, "Framed-IPv6-Prefix", AVP_TYPE_OCTETSTRING);
	avp(500, 10415, "Abort-Cause", AVP_TYPE_INTEGER32);
	avp(504, 10415, "AF-Application-Identifier", AVP_TYPE_OCTETSTRING);
	avp(505, 10415, "AF-Charging-Identifier", AVP_TYPE_OCTETSTRING);
	avp(507, 10415, "Flow-Description", AVP_TYPE_OCTETSTRING);
	avp(509, 10415, "Flow-Number", AVP_TYPE_UNSIGNED32);
	avp(511, 10415, "Flow-Status", AVP_TYPE_INTEGER32);
	avp(512, 10415, "Flow-Usage", AVP_TYPE_INTEGER32);
	avp(513, 10415, "Specific-Action", AVP_TYPE_INTEGER32);
	avp(515, 10415, "Max-Requested-Bandwidth-DL", AVP_TYPE_UNSIGNED32);
	avp(516, 10415, "Max-Requested-Bandwidth-UL", AVP_TYPE_UNSIGNED32);
	avp(517, 10415, "Media-Component-Description", AVP_TYPE_GROUPED);
	avp(518, 10415, "Media-Component-Number", AVP_TYPE_UNSIGNED32);
	avp(519, 10415, "Media-Sub-Component", AVP_TYPE_GROUPED);
	avp(520, 10415, "Media-Type", AVP_TYPE_INTEGER32);
	avp(521, 10415, "RR-Bandwidth", AVP_TYPE_UNSIGNED32);
	avp(522, 10415, "RS-Bandwidth", AVP_TYPE_UNSIGNED32);
	avp(300, 13019, "Globally-Unique-Address", AVP_TYPE_GROUPED);
	avp(301, 13019, "Address-Realm", AVP_TYPE_OCTETSTRING);
	avp(450, 13019, "Binding-Information", AVP_TYPE_GROUPED);
	avp(451, 13019, "Binding-Input-List", AVP_TYPE_GROUPED);
	avp(452, 13019, "Binding-Output-List", AVP_TYPE_GROUPED);
	avp(453, 13019, "V6-Transport-Address", AVP_TYPE_GROUPED);
	avp(454, 13019, "V4-Transport-Address", AVP_TYPE_GROUPED);
	avp(455, 13019, "Port-Number", AVP_TYPE_UNSIGNED32);
	avp(457, 13019, "Latching-Indication", AVP_TYPE_INTEGER32);
	avp(458, 13019, "Reservation-Priority", AVP_TYPE_INTEGER32);
	avp(459, 13019, "Service-Class", AVP_TYPE_OCTETSTRING);
	avp(461, 13019, "Authorization-Package-Id", AVP_TYPE_OCTETSTRING);

	aar = command(265, "AA-Request", "AA-Answer");
	str = command(275, "Session-Termination-Request",
		      "Session-Termination-Answer");
	if (aar == NULL || str == NULL)
		return EINVAL;

	memset(&when, 0, sizeof(when));
	when.command = aar;
	CHECK_FCT(fd_disp_register(answer_success, DISP_HOW_CC, &when, NULL,
				   NULL));
	when.command = str;
	CHECK_FCT(fd_disp_register(answer_success, DISP_HOW_CC, &when, NULL,
				   NULL));
	CHECK_FCT(fd_disp_app_support(gq_app, tgpp, 1, 0));
	return 0;
}

EXTENSION_ENTRY("gq_answer", gq_answer_entry);
