/**
 * The controller process: wires config, database, NATS, secrets and the gRPC
 * API together, and takes them apart again in reverse on stop.
 */
import { FanoutPlanner } from '../deploy/index.ts';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { sql } from 'drizzle-orm';
import { openDatabase, redactDatabaseUrl, type DbHandle } from '../../db/index.ts';
import { Health } from '../../proto/gen/grpc/health/v1/health_pb.js';
import { EventService } from '../../proto/gen/bm/v1/event_pb.js';
import { NodeService } from '../../proto/gen/bm/v1/node_pb.js';
import { PortService } from '../../proto/gen/bm/v1/port_pb.js';
import { ImageService } from '../../proto/gen/bm/v1/image_pb.js';
import {
  imageHandlers,
  AGENT_REGISTRY_PREFIX,
  agentRegistryHandlers,
  eventHandlers,
  healthHandlers,
  HealthState,
  nodeHandlers,
  portHandlers,
  describeDatabaseError,
  isDatabaseError,
  isDatabaseUnreachable,
  statusMapper,
  requestLimits,
  flavorHandlers,
  instanceHandlers,
  apiObserver,
  tokenHandlers,
  clusterHandlers,
} from '../api/index.ts';
import { AgentRegistry as AgentRegistryService } from '../../proto/gen/bm/v1/agent_registry_pb.js';
import { AgentRegistry, MysqlAgentTokens } from '../agents/index.ts';
import { ImageCatalog, openBlobStore, CatalogBlobSource } from '../images/index.ts';
import { addService, bindServer, shutdownServer, type ServeOptions } from '../../proto/rpc/index.ts';
import { adminAuth, callerAuth, RefusalLog, TokenSet, TokenDirectory } from '../auth/index.ts';
import { Fence, Membership, Forwarder, type ForwardHandler, Ownership } from '../cluster/index.ts';
import type { Config } from '../config/index.ts';
import { BmError } from '../errors.ts';
import { NatsEventBus, Subjects, RecentEvents } from '../events/index.ts';
import { Enrollment, FencedNodeStore, MysqlNodeStore, type NodeRecord } from '../nodes/index.ts';
import {
  PowerConductor,
  PowerSync,
  MysqlPowerSyncStore,
  MysqlBootBackend,
  MysqlBootStateSource,
  AgentBoot,
  BmcAccess,
  bmcObserver,
  MysqlDeployCheckpoints,
  DeployStartQueue,
  Provisioner,
  TaskManager,
  UnreleasedReservations,
  DeadReservations,
  forwardedActionHandler,
  LocalNodeActions,
  NodeRouter,
  MysqlMetadataSource,
  diagnoseNode,
  type DiagnoseDeps,
} from '../conductor/index.ts';
import { powerFactory } from '../drivers/power/index.ts';
import { Registry } from 'prom-client';
import { IpmiDriver, SessionPool } from '../drivers/power/ipmi/index.ts';
import { IpmitoolDriver } from '../drivers/power/ipmitool/index.ts';
import { loadSecretKey, SecretBox } from '../secrets/index.ts';
import { bootPlanConfig, startBootServices, DirectoryBlobSource } from '../boot/index.ts';
import { loadAgentCa, ReloadingTlsIdentity } from './tls-identity.ts';
import { FlavorService } from '../../proto/gen/bm/v1/flavor_pb.js';
import { InstanceService } from '../../proto/gen/bm/v1/instance_pb.js';
import { startMetricsServer } from './metrics-server.ts';
import { FakeBmcWorld, FakePowerDriver } from '../drivers/power/fake/index.ts';
import { FlavorCatalog } from '../flavors/index.ts';
import { InstanceManager, InstanceStore } from '../instances/index.ts';
import { Scheduler } from '../scheduler/index.ts';
import { TokenService } from '../../proto/gen/bm/v1/token_pb.js';
import { ClusterService } from '../../proto/gen/bm/v1/cluster_pb.js';

export interface RunningController {
  readonly id: string;
  readonly apiPort: number;
  stop(graceMs?: number): Promise<void>;
}

async function checkSchema(handle: DbHandle, url: string): Promise<void> {
  try {
    await handle.db.execute(sql`SELECT 1 FROM nodes LIMIT 1`);
  } catch (err) {
    throw new BmError(
      'failed-precondition',
      `database ${redactDatabaseUrl(url)} is not ready (${describeDatabaseError(err)}); run \`bmctl db sync\` first`,
    );
  }
}

export async function startController(config: Config, log: Logger): Promise<RunningController> {
  const tokens = new TokenSet(config.api.tokens);
  if (tokens.size === 0)
    throw new BmError(
      'invalid-argument',
      'api.tokens: no admin token configured; every API call needs one (make one with `bmctl token create`)',
    );
  const [host, portText] = [
    config.api.listen.slice(0, config.api.listen.lastIndexOf(':')),
    config.api.listen.slice(config.api.listen.lastIndexOf(':') + 1),
  ];
  const id = config.controller.id || `${os.hostname()}-${portText}`;
  // Checked before anything opens, so a bad certificate stops the start with the key named.
  const tls =
    config.api.tls_cert === ''
      ? null
      : new ReloadingTlsIdentity({ certFile: config.api.tls_cert, keyFile: config.api.tls_key }, config.api.tls_reload_ms, log);
  const agentCa = tls ? loadAgentCa(config.api.tls_ca || config.api.tls_cert, config.api.tls_ca ? 'api.tls_ca' : 'api.tls_cert') : null;

  const { key, created } = await loadSecretKey({ key: config.secrets.key, keyFile: config.secrets.key_file });
  if (created)
    log.warn({ file: config.secrets.key_file }, 'created a new secret key file; copy it to every other controller of this cluster');
  const secrets = new SecretBox(key);

  const handle = await openDatabase(config.database.url, { connectionLimit: config.database.pool_size });
  const cleanup: (() => Promise<void>)[] = [() => handle.close()];
  try {
    await checkSchema(handle, config.database.url);
    const bus = await NatsEventBus.connect(config.nats.url, id, { subjects: new Subjects(config.nats.prefix) });
    cleanup.unshift(() => bus.close());
    // Closes when the heartbeat has not renewed for half of dead_after: well before peers may take our nodes.
    const fence = new Fence({ controllerId: id, fenceAfterMs: (config.controller.dead_after_s * 1000) / 2 }, log);
    fence.start();
    cleanup.unshift(async () => fence.stop());
    // Every node write of this process passes the fence at the moment it is made.
    const store = new FencedNodeStore(new MysqlNodeStore(handle.db), fence);
    const enrollment = new Enrollment(store, bus, secrets);
    const health = new HealthState();
    const blobs = await openBlobStore(config, id, log);
    cleanup.unshift(() => blobs.close());
    const catalog = new ImageCatalog(handle.db, blobs.store, { maxUploadBytes: config.images.max_upload_gb * 1024 ** 3 });

    const directory = new TokenDirectory(tokens, handle.db);
    const refusals = new RefusalLog(log);
    cleanup.unshift(async () => refusals.flush());
    const server = new grpc.Server({
      'grpc.max_receive_message_length': config.api.max_message_bytes,
      'grpc.max_send_message_length': config.api.max_message_bytes,
      // Agents authenticate with their per-operation token inside the registry, not with admin tokens.
      interceptors: [adminAuth(directory, refusals, [AGENT_REGISTRY_PREFIX])],
    });
    // Agents authenticate with their per-operation token inside the registry, not with admin tokens.
    const metrics = new Registry();
    const serve: ServeOptions = {
      interceptors: [callerAuth(directory, [AGENT_REGISTRY_PREFIX])],
      toStatus: statusMapper(log, refusals),
      maxRequestBytes: requestLimits(config.api),
      onCallEnd: apiObserver(log, metrics),
    };
    const leases = new MysqlBootBackend(handle.pool);
    const registry = new AgentRegistry(
      store,
      new MysqlAgentTokens(handle.db, secrets),
      bus,
      {
        enabled: config.discovery.enabled,
        group: config.discovery.group,
        ratePerSecond: config.discovery.rate_per_second,
        burst: config.discovery.burst,
      },
      (macs) => leases.leasedAddresses(macs),
    );
    addService(server, Health, healthHandlers(health), serve);
    // One IPMI session pool for the process: sessions are reused per BMC and
    // closed on the BMCs at stop (after the loops below that use them).
    const ipmiSessions = new SessionPool();
    cleanup.unshift(() => ipmiSessions.close());
    const fakeBmcs = new FakeBmcWorld();
    const drivers = powerFactory({
      ipmi: (target) => new IpmiDriver(target, { pool: ipmiSessions, timeoutMs: config.power.call_timeout_s * 1000 }),
      ipmitool: (target) => new IpmitoolDriver(target, { cipherSuite: config.power.ipmitool_cipher_suite }),
      fake: (target) => new FakePowerDriver(target, fakeBmcs),
    });
    // Membership joins once the API is bound (its row names the bound address); the handler reads it then.
    const clusterView: { membership: Membership | null } = { membership: null };
    // The API address is known once bound; until then (and until it joins) the ring holds only this controller.
    let apiAddress = config.api.listen;
    const ownership = new Ownership(
      () => ({ id, apiAddress, groups: config.controller.groups }),
      () => clusterView.membership,
    );
    const powerSync = new PowerSync(
      new MysqlPowerSyncStore(handle.db, secrets, config.controller.groups),
      drivers,
      bus,
      {
        intervalMs: config.power.sync_interval_s * 1000,
        concurrency: config.power.sync_concurrency,
        enforce: config.power.sync_enforce,
        failureThreshold: config.power.sync_failure_threshold,
        callTimeoutMs: config.power.call_timeout_s * 1000,
        paused: () => fence.fenced,
        owned: async () => {
          const owners = await ownership.snapshot();
          return (node) => owners.isSelf(owners.ownerOf(node));
        },
      },
      metrics,
      log,
    );
    powerSync.start();
    cleanup.unshift(() => powerSync.stop());
    // Reservations tasks and power verbs could not release while fenced; the recovery sweep lets go of them once unfenced.
    const unreleased = new UnreleasedReservations();
    const power = new PowerConductor(
      store,
      secrets,
      bus,
      drivers,
      { controllerId: id, settleTimeoutMs: config.power.settle_timeout_s * 1000, settlePollMs: 500, fence, unreleased },
      log,
    );
    const agentTokens = new MysqlAgentTokens(handle.db, secrets);
    const deadReservations = new DeadReservations(handle.db, config.controller.dead_after_s * 1000, id);
    // Nobody's reservation is judged dead while our own view of the heartbeats is not settled (after an outage).
    // Fenced, nobody's reservation is judged either: a sweep that began before the fence stops breaking at it.
    const breakDead = async (nodeUuid: string): Promise<boolean> =>
      fence.fenced || (clusterView.membership !== null && !clusterView.membership.settled) ? false : deadReservations.breakIfDead(nodeUuid);
    const tasks = new TaskManager(store, bus, { controllerId: id, breakDead, fence, unreleased }, log);
    // Stop order: tasks let go of their nodes (keeping their states) before the database closes.
    cleanup.unshift(() => tasks.stop());
    const bmc = new BmcAccess(store, secrets, drivers, bmcObserver(log, metrics));
    const instanceStore = new InstanceStore(handle.db);
    const provisioner = new Provisioner({
      store,
      tasks,
      bmc,
      boot: new AgentBoot(bmc, agentTokens, {
        callbackTimeoutMs: config.conductor.callback_timeout_s * 1000,
        tokenTtlMs: config.agent.token_ttl_s * 1000,
        settleTimeoutMs: config.power.settle_timeout_s * 1000,
        pollMs: config.conductor.poll_ms,
        events: bus,
      }),
      images: catalog,
      instances: instanceStore,
      checkpoints: new MysqlDeployCheckpoints(handle.db),
      eraseMode: config.conductor.erase_mode,
      ...(config.conductor.deploy_fanout > 0 ? { fanout: new FanoutPlanner({ fanout: config.conductor.deploy_fanout }) } : {}),
      deployStarts: new DeployStartQueue(config.conductor.deploy_start_concurrency, metrics),
      groups: config.controller.groups,
      log,
    });
    const recover = async (): Promise<void> => {
      // Fenced, we may not judge anyone dead nor take anything over; the sweep after the unfence does it.
      if (fence.fenced) return;
      // One reading of the members alive now per sweep.
      const owners = await ownership.snapshot();
      const owns = async (node: NodeRecord): Promise<boolean> => owners.isSelf(owners.ownerOf(node));
      await tasks.releaseLeftovers();
      const recovered = await provisioner.recover(id, breakDead, owns);
      if (recovered > 0)
        log.warn(
          { recovered },
          'nodes left mid-task by a stopped controller were taken over (deploys resume) or moved to their failed states',
        );
    };
    await recover();
    // Dead peers' nodes are found on this interval too, not only at our own start.
    let sweeping: Promise<void> | null = null;
    const sweep = (): void => {
      sweeping ??= recover()
        .catch((err: unknown) => log.warn({ err }, 'recovery sweep failed'))
        .finally(() => (sweeping = null));
    };
    const recovery = setInterval(sweep, config.controller.dead_after_s * 1000);
    recovery.unref();
    cleanup.unshift(async () => clearInterval(recovery));
    // Back from a fence: our nodes that no peer took meanwhile are resumed (a taken one is theirs now: its epoch moved).
    fence.onUnfenced(() => setTimeout(sweep, 0).unref());
    // A peer that leaves (a rolling restart) or is found dead hands its nodes over now, not at the next interval.
    const peerEvents = bus.subscribe(null);
    cleanup.unshift(async () => peerEvents.close());
    void (async () => {
      for await (const e of peerEvents) {
        if ((e.type === 'controller.left' || e.type === 'controller.dead') && e.details.controller !== id) setTimeout(sweep, 200).unref();
      }
    })().catch(() => undefined);
    // Actions on nodes run at the node's owner: here, or forwarded to it over NATS.
    const localActions = new LocalNodeActions(power, provisioner);
    const forwarder = new Forwarder(
      bus.connection,
      { self: id, subjects: bus.subjects, timeoutMs: config.controller.forward_timeout_ms },
      log,
    );
    const actions = new NodeRouter(localActions, store, ownership, forwarder, log, fence);
    const answerForwarded = forwardedActionHandler(localActions, store, instanceStore, log);
    // The caller's API maps the error as ours would have: typed errors travel as they are; a database failure as its one line.
    forwarder.serve((async (action, args, from) => {
      try {
        return await answerForwarded(action, args, from);
      } catch (err) {
        if (err instanceof BmError) throw err;
        if (isDatabaseError(err))
          throw new BmError(isDatabaseUnreachable(err) ? 'unavailable' : 'internal', `database error: ${describeDatabaseError(err)}`);
        log.error({ err, forwarded: action, from }, 'unexpected error in a forwarded action');
        throw err;
      }
    }) as ForwardHandler);
    cleanup.unshift(() => forwarder.close());
    const flavors = new FlavorCatalog(handle.db, catalog);
    const instances = new InstanceManager({
      store: instanceStore,
      nodes: store,
      flavors,
      images: catalog,
      scheduler: new Scheduler(handle.db),
      provisioner,
      actions,
      ownership,
      controllerId: id,
      fence,
    });
    const recent = new RecentEvents();
    recent.start(bus);
    cleanup.unshift(async () => recent.stop());
    // Set once boot services run (their script config needs the bound API port).
    let bootView: DiagnoseDeps['boot'];
    const diagnose = (nodeId: string): Promise<Record<string, unknown>> =>
      diagnoseNode(
        {
          db: handle.db,
          nodes: store,
          instances: instanceStore,
          events: recent,
          controllerId: id,
          ...(bootView ? { boot: bootView } : {}),
        },
        nodeId,
      );
    addService(server, NodeService, nodeHandlers(enrollment, store, actions, diagnose), serve);
    addService(server, FlavorService, flavorHandlers(flavors), serve);
    addService(server, InstanceService, instanceHandlers(instances, store), serve);
    addService(server, PortService, portHandlers(enrollment, store), serve);
    addService(server, EventService, eventHandlers(bus, instanceStore.projectHasNode.bind(instanceStore)), serve);
    addService(server, TokenService, tokenHandlers(directory), serve);
    addService(server, ClusterService, clusterHandlers(clusterView, store, id), serve);
    addService(server, ImageService, imageHandlers(catalog), serve);
    // A fenced controller records no agent: the agent retries, and its heartbeat lands once a renew succeeds.
    const agentHandlers = agentRegistryHandlers(registry);
    addService(
      server,
      AgentRegistryService,
      {
        ...agentHandlers,
        register: async (req, ctx) => {
          fence.check();
          return agentHandlers.register(req, ctx);
        },
        heartbeat: async (req, ctx) => {
          fence.check();
          return agentHandlers.heartbeat(req, ctx);
        },
      },
      serve,
    );
    const apiPort = await bindServer(server, `${host}:${portText}`, tls?.serverCredentials());
    apiAddress = `${host}:${apiPort}`;
    cleanup.unshift(() => shutdownServer(server, 5000));
    if (tls) {
      cleanup.unshift(async () => tls.stop());
      log.info({ cert: config.api.tls_cert }, 'API serves TLS only');
    }

    // DHCP mode "off" still serves TFTP and HTTP boot, for segments whose own DHCP points here.
    if (config.boot) {
      const boot = config.boot;
      const states = new MysqlBootStateSource(store, agentTokens, handle.db);
      const controllerUrl = boot.api_url ?? `${tls ? 'https' : 'http'}://${boot.server_address}:${apiPort}`;
      const discovery = boot.discovery || config.discovery.enabled;
      bootView = { states, plan: bootPlanConfig(boot, controllerUrl, discovery, agentCa ?? undefined) };
      const services = await startBootServices(boot, {
        backend: leases,
        metadata: new MysqlMetadataSource(handle.db, instanceStore, store),
        states,
        controllerUrl,
        ...(agentCa ? { agentCa } : {}),
        blobs: new CatalogBlobSource(catalog, new DirectoryBlobSource(boot.http_root)),
        discovery,
        metrics,
        log,
      });
      cleanup.unshift(() => services.close());
      log.info({ mode: boot.mode, ...services.ports }, 'boot services started');
    }

    if (config.metrics.listen !== '') {
      const metricsServer = await startMetricsServer(config.metrics.listen, metrics, log);
      if (metricsServer) {
        cleanup.unshift(() => metricsServer.close());
        log.info({ port: metricsServer.port }, 'metrics served');
      }
    }

    const membership = new Membership(
      handle.db,
      {
        id,
        apiAddress: `${host}:${apiPort}`,
        groups: config.controller.groups,
        intervalMs: config.controller.heartbeat_interval_ms,
        deadAfterMs: config.controller.dead_after_s * 1000,
      },
      log,
      { events: bus, heartbeat: (controllerId, payload) => bus.publishRaw(bus.subjects.controllerHeartbeat(controllerId), payload) },
      fence,
    );
    clusterView.membership = membership;
    await membership.join();
    // Tasks let go of their nodes first, then the leave is announced: a peer taking a node over never meets a task still running here.
    cleanup.unshift(async () => {
      await tasks.stop();
      await membership.leave();
    });

    log.info(
      {
        id,
        api: `${host}:${apiPort}`,
        database: redactDatabaseUrl(config.database.url),
        nats: config.nats.url,
        natsPrefix: config.nats.prefix,
        groups: config.controller.groups,
      },
      'controller started',
    );
    return {
      id,
      apiPort,
      async stop(graceMs = 5000) {
        health.set(false);
        log.info({ id, graceMs }, 'controller stopping');
        for (const step of cleanup) {
          await step().catch((err: unknown) => log.warn({ err }, 'error while stopping'));
        }
        log.info({ id }, 'controller stopped');
      },
    };
  } catch (err) {
    for (const step of cleanup) await step().catch(() => undefined);
    throw err;
  }
}
