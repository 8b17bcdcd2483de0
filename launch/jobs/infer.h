// `vitruvian infer`: bulk inference campaigns over MPI ranks, wired from the stages of
// launch/campaign/ (sources → routes → report → sinks, with the ledger and the campaign page).
// Every rank loads each routed model once; studies are handed out dynamically, largest first;
// rerunning skips verified studies; failures are recorded and the campaign goes on.
#pragma once

#include <memory>

#include "core/exit_code.h"
#include "launch/campaign/campaign_config.h"
#include "launch/jobs/job_context.h"
#include "launch/jobs/verb.h"

namespace vitruvian::jobs {

/// Collective. kOk when every study is done, kFailed when some failed (each recorded with its
/// reason in campaign.json), kUsage for a bad campaign or inputs (one line), kInterrupted when a
/// rank received SIGTERM or SIGUSR1 (core/stop_request.h) and studies were left: the signalled
/// ranks take no new study, finish the one in flight, the summary is written, and a rerun does
/// the rest. `force`: redo the
/// selected studies (all when none are selected), removing their earlier outputs.
ExitCode run_infer(const JobContext& context, const campaign::CampaignConfig& config, bool force);

/// The `infer` verb: the campaign's keys from --campaign FILE, --config, --set and its flags.
std::unique_ptr<Verb> make_infer_verb();

}  // namespace vitruvian::jobs
