package dev.willowisp.agent;

import static net.bytebuddy.matcher.ElementMatchers.any;
import static net.bytebuddy.matcher.ElementMatchers.isBootstrapClassLoader;
import static net.bytebuddy.matcher.ElementMatchers.isConstructor;
import static net.bytebuddy.matcher.ElementMatchers.isSynthetic;
import static net.bytebuddy.matcher.ElementMatchers.named;
import static net.bytebuddy.matcher.ElementMatchers.isInterface;
import static net.bytebuddy.matcher.ElementMatchers.isPublic;
import static net.bytebuddy.matcher.ElementMatchers.isSynchronized;
import static net.bytebuddy.matcher.ElementMatchers.nameStartsWith;
import static net.bytebuddy.matcher.ElementMatchers.namedOneOf;
import static net.bytebuddy.matcher.ElementMatchers.none;
import static net.bytebuddy.matcher.ElementMatchers.not;
import static net.bytebuddy.matcher.ElementMatchers.takesArguments;

import net.bytebuddy.agent.builder.AgentBuilder;
import java.util.List;
import net.bytebuddy.asm.Advice;
import net.bytebuddy.asm.AsmVisitorWrapper;
import net.bytebuddy.implementation.bytecode.assign.Assigner;
import net.bytebuddy.description.field.FieldDescription;
import net.bytebuddy.description.field.FieldList;
import net.bytebuddy.description.method.MethodList;
import net.bytebuddy.description.type.TypeDescription;
import net.bytebuddy.implementation.Implementation;
import net.bytebuddy.jar.asm.ClassVisitor;
import net.bytebuddy.jar.asm.ClassWriter;
import net.bytebuddy.jar.asm.MethodVisitor;
import net.bytebuddy.jar.asm.Opcodes;
import net.bytebuddy.matcher.ElementMatcher;
import net.bytebuddy.dynamic.ClassFileLocator;
import net.bytebuddy.pool.TypePool;
import net.bytebuddy.dynamic.DynamicType;
import net.bytebuddy.utility.JavaModule;
import java.lang.instrument.Instrumentation;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The bytecode hooks, installed with Byte Buddy (shaded) as {@link Advice} inlined into JDK
 * methods: {@code ReentrantLock} and {@code ReentrantReadWriteLock}'s read and write locks
 * (every acquisition and release), their conditions' {@code await} (which releases the lock
 * until it returns) and {@code signal}, {@code java.net.http.HttpClient}'s implementation and
 * {@code com.sun.net.httpserver}'s request dispatch, and {@code synchronized} in the
 * application classes {@code WILLOWISP_JAVA_SYNC} names. Classes already loaded are
 * retransformed; advice adds no fields or methods, so retransformation is allowed. The
 * modules of instrumented classes are made to read the agent's (unnamed, bootstrap) module.
 */
final class Instrument {
  /** Advice bytes come from the agent jar, which the system class loader sees. */
  private static final ClassFileLocator LOCATOR =
      new ClassFileLocator.Compound(
          ClassFileLocator.ForClassLoader.ofSystemLoader(), ClassFileLocator.ForClassLoader.ofBootLoader());

  private static final TypePool POOL = TypePool.Default.of(LOCATOR);

  private static final String[] LOCK_TARGETS = {
    "java.util.concurrent.locks.ReentrantLock",
    "java.util.concurrent.locks.ReentrantReadWriteLock$ReadLock",
    "java.util.concurrent.locks.ReentrantReadWriteLock$WriteLock",
    "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject",
  };

  private static final String[] HTTP_TARGETS = {
    "jdk.internal.net.http.HttpClientImpl",
    "com.sun.net.httpserver.Filter$Chain",
    "sun.net.httpserver.ExchangeImpl",
  };

  private static final String[] EXECUTOR_TARGETS = {
    "java.util.concurrent.ThreadPoolExecutor",
    "java.util.concurrent.CompletableFuture$AsyncSupply",
    "java.util.concurrent.CompletableFuture$AsyncRun",
    "java.util.concurrent.ForkJoinPool",
    "java.util.concurrent.ForkJoinTask",
    "java.util.concurrent.ScheduledThreadPoolExecutor",
    "java.lang.Thread",
    "java.lang.VirtualThread",
  };

  private Instrument() {}

  /** The Thread.start / exit advice is installed (by start-up or a later enable); once only. */
  private static volatile boolean threadHooks;

  /**
   * Advice described from its class file, not loaded: HTTP advice names types of modules
   * the bootstrap class loader cannot see.
   */
  private static Advice advice(String simpleName) {
    return Advice.to(POOL.describe("dev.willowisp.agent." + simpleName).resolve(), LOCATOR);
  }

  /**
   * Installs the hooks: {@code locks} the ReentrantLock / RRWL advice; {@code prefixSync}
   * synchronized in the classes WILLOWISP_JAVA_SYNC names (recorded always); {@code appSync}
   * synchronized in every application class (recorded inside boundary instances only;
   * excluding the named classes when {@code prefixSync} hooked them earlier); {@code http}
   * the HTTP client and server advice.
   */
  static void install(
      Instrumentation inst, Recorder rec, boolean locks, boolean prefixSync, boolean appSync, boolean http) {
    install(inst, rec, locks, prefixSync, appSync, http, http && rec.cfg.mode.equals("full") && rec.cfg.jfr);
  }

  /** As above; {@code exitHook}: the advice that collects JFR's last events at exit. */
  static void install(
      Instrumentation inst,
      Recorder rec,
      boolean locks,
      boolean prefixSync,
      boolean appSync,
      boolean http,
      boolean exitHook) {
    // The agent injects no classes: keep (shaded) Byte Buddy from probing sun.misc.Unsafe,
    // which JDK 24+ would warn about on stderr. The name is the relocated one, so an
    // application's own Byte Buddy is unaffected.
    if (System.getProperty("dev.willowisp.shaded.bytebuddy.safe") == null) {
      System.setProperty("dev.willowisp.shaded.bytebuddy.safe", "true");
    }
    List<String> prefixes = rec.cfg.syncClasses;
    ElementMatcher.Junction<TypeDescription> named = none();
    for (String p : prefixes) named = named.or(nameStartsWith(p));
    ElementMatcher.Junction<TypeDescription> sync = prefixSync ? named : none();
    if (appSync) sync = sync.or(applicationClass().and(prefixSync ? any() : not(named)));
    sync = sync.and(not(nameStartsWith("dev.willowisp."))).and(not(isInterface())).and(not(isSynthetic()));
    ElementMatcher.Junction<TypeDescription> targets = none();
    if (locks) targets = targets.or(namedOneOf(LOCK_TARGETS));
    if (http) targets = targets.or(namedOneOf(HTTP_TARGETS));
    if (exitHook) targets = targets.or(named("java.lang.Shutdown"));
    // who starts each virtual thread (JDK 21+; JFR's VirtualThreadStart names no parent)
    // boundaries follow work handed to executors and threads started inside them
    // (installed with boundaries only)
    boolean executors = appSync;
    boolean vthreads = (locks && rec.cfg.mode.equals("full")) || executors;
    if (vthreads) targets = targets.or(named("java.lang.VirtualThread"));
    if (executors) targets = targets.or(namedOneOf(EXECUTOR_TARGETS));
    // platform threads' start and end: threads started inside a boundary instance, and (full
    // mode with JFR) threads started before JFR runs (EarlyThreads); and in full mode every
    // Thread.join that saw its thread end (join.done: the happens-before edge from the
    // thread's end); installed once
    boolean joins = locks && rec.cfg.mode.equals("full");
    boolean threads = (executors || EarlyThreads.open || joins) && !threadHooks;
    if (threads) targets = targets.or(named("java.lang.Thread"));
    AgentBuilder b =
        new AgentBuilder.Default()
            .disableClassFormatChanges()
            .with(AgentBuilder.RedefinitionStrategy.RETRANSFORMATION)
            // classes loaded while the hooks install (JDK 25 loads ForkJoinPool then) are
            // retransformed too
            .with(AgentBuilder.RedefinitionStrategy.DiscoveryStrategy.Reiterating.INSTANCE)
            .with(AgentBuilder.InitializationStrategy.NoOp.INSTANCE)
            .with(AgentBuilder.TypeStrategy.Default.REDEFINE)
            .with(new Listener(rec))
            // only the classes below are looked at, so other class loads stay cheap
            .ignore(not(targets.or(sync)))
            .assureReadEdgeTo(inst, Hooks.class);
    if (locks) {
      b =
          b.type(named("java.util.concurrent.locks.ReentrantLock"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(LockAcquire.class, LOCATOR).on(named("lock").or(named("lockInterruptibly"))))
                          .visit(Advice.to(LockTry.class, LOCATOR).on(named("tryLock")))
                          .visit(Advice.to(LockUnlock.class, LOCATOR).on(named("unlock"))))
              .type(named("java.util.concurrent.locks.ReentrantReadWriteLock$ReadLock"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(ReadAcquire.class, LOCATOR).on(named("lock").or(named("lockInterruptibly"))))
                          .visit(Advice.to(ReadTry.class, LOCATOR).on(named("tryLock")))
                          .visit(Advice.to(ReadUnlock.class, LOCATOR).on(named("unlock"))))
              .type(named("java.util.concurrent.locks.ReentrantReadWriteLock$WriteLock"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(WriteAcquire.class, LOCATOR).on(named("lock").or(named("lockInterruptibly"))))
                          .visit(Advice.to(WriteTry.class, LOCATOR).on(named("tryLock")))
                          .visit(Advice.to(WriteUnlock.class, LOCATOR).on(named("unlock"))))
              // await releases the lock fully and re-acquires it before returning
              .type(named("java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(CondAwait.class, LOCATOR).on(isPublic().and(nameStartsWith("await"))))
                          .visit(Advice.to(CondSignal.class, LOCATOR).on(named("signal")))
                          .visit(Advice.to(CondSignalAll.class, LOCATOR).on(named("signalAll"))));
      Hooks.openLocks(inst, rec);
    }
    if (prefixSync || appSync) {
      b =
          b.type(sync, appSync ? not(isBootstrapClassLoader()) : any())
              .transform(
                  (builder, type, loader, module, pd) -> {
                    // the named classes record always; others only inside a boundary instance
                    boolean always = rec.cfg.syncHooked(type.getName());
                    return builder
                        .visit(new MonitorInsns(always))
                        .visit(Advice.to(always ? SyncMethod.class : SyncMethodGated.class, LOCATOR).on(isSynchronized()));
                  });
    }
    if (http) b = httpHooks(b);
    if (vthreads) {
      // VirtualThread.start(ThreadContainer): every start path (Thread.start,
      // Thread.Builder.start, Thread.startVirtualThread, the thread-per-task executor) ends here
      b =
          b.type(named("java.lang.VirtualThread"))
              .transform(
                  (builder, type, loader, module, pd) -> {
                    DynamicType.Builder<?> v =
                        builder.visit(Advice.to(VirtualStart.class, LOCATOR).on(named("start").and(takesArguments(1))));
                    // the end of a virtual thread started inside a boundary instance
                    return executors
                        ? v.visit(Advice.to(ThreadEnds.class, LOCATOR).on(named("run").and(takesArguments(1))))
                        : v;
                  });
    }
    if (executors) {
      b =
          b.type(named("java.util.concurrent.ThreadPoolExecutor"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(PoolExecute.class, LOCATOR).on(named("execute").and(takesArguments(1))))
                          .visit(Advice.to(PoolBefore.class, LOCATOR).on(named("beforeExecute").and(takesArguments(2))))
                          .visit(Advice.to(PoolAfter.class, LOCATOR).on(named("afterExecute").and(takesArguments(2)))))
              .type(namedOneOf("java.util.concurrent.CompletableFuture$AsyncSupply", "java.util.concurrent.CompletableFuture$AsyncRun"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(AsyncCreated.class, LOCATOR).on(isConstructor()))
                          .visit(Advice.to(AsyncRuns.class, LOCATOR).on(named("run").and(takesArguments(0)))))
              // ForkJoinPool's own submissions (JDK 17: externalSubmit / externalPush; 21+:
              // poolSubmit / externalSubmit), run by ForkJoinTask.doExec on whichever thread
              .type(named("java.util.concurrent.ForkJoinPool"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(
                              Advice.to(PoolExecute.class, LOCATOR)
                                  .on(namedOneOf("externalSubmit", "externalPush").and(takesArguments(1))))
                          .visit(Advice.to(ForkJoinSubmit.class, LOCATOR).on(named("poolSubmit").and(takesArguments(2)))))
              .type(named("java.util.concurrent.ForkJoinTask"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder.visit(Advice.to(AsyncRuns.class, LOCATOR).on(named("doExec").and(takesArguments(0)))))
              // schedule / scheduleAtFixedRate / scheduleWithFixedDelay (and its execute,
              // submit) queue a ScheduledFutureTask without ThreadPoolExecutor.execute
              .type(named("java.util.concurrent.ScheduledThreadPoolExecutor"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(PoolExecute.class, LOCATOR).on(named("delayedExecute").and(takesArguments(1))))
                          .visit(Advice.to(PeriodicAgain.class, LOCATOR).on(named("reExecutePeriodic").and(takesArguments(1)))));
    }
    if (threads) {
      threadHooks = true;
      // platform threads (VirtualThread overrides start)
      b =
          b.type(named("java.lang.Thread"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder
                          .visit(Advice.to(ThreadStarts.class, LOCATOR).on(named("start").and(takesArguments(0).or(takesArguments(1)))))
                          .visit(Advice.to(ThreadExits.class, LOCATOR).on(named("exit").and(takesArguments(0))))
                          .visit(Advice.to(ThreadJoins.class, LOCATOR).on(named("join"))));
    }
    if (exitHook) {
      b =
          b.type(named("java.lang.Shutdown"))
              .transform(
                  (builder, type, loader, module, pd) ->
                      builder.visit(Advice.to(BeforeHooks.class, LOCATOR).on(named("runHooks"))));
    }
    b.installOn(inst);
  }

  /**
   * Later, from {@code willowisp ctl enable} in a JVM that started without boundaries: the
   * lock hooks (when start-up did not install them) and synchronized in application classes.
   * Called on the control channel's thread: the reply waits for the retransformation (well
   * under ctl's 5 s), so requests after it are recorded.
   */
  static void installLate(Instrumentation inst, Recorder rec, boolean locks) {
    try {
      install(inst, rec, locks, false, true, false);
    } catch (Throwable e) {
      rec.fault("instrument", e);
    }
  }

  /**
   * Classes of the program: loaded by neither the bootstrap nor the platform class loader,
   * outside the JDK's packages, the agent and a few build tools' own.
   */
  static ElementMatcher.Junction<TypeDescription> applicationClass() {
    ElementMatcher.Junction<TypeDescription> m = any();
    for (String p : NOT_APPLICATION) m = m.and(not(nameStartsWith(p)));
    return m;
  }

  private static final String[] NOT_APPLICATION = {
    "java.", "javax.", "jdk.", "sun.", "com.sun.", "dev.willowisp.", "net.bytebuddy.", "org.junit.",
    "org.apache.maven.", "org.codehaus.plexus.", "org.gradle.", "kotlin.", "scala."
  };

  private static AgentBuilder httpHooks(AgentBuilder b) {
    return b.type(named("jdk.internal.net.http.HttpClientImpl"))
        .transform(
                (builder, type, loader, module, pd) ->
                    builder
                        .visit(advice("HttpAdvice$ClientSend").on(named("send").and(takesArguments(2))))
                        .visit(advice("HttpAdvice$ClientSendAsync").on(named("sendAsync").and(takesArguments(4)))))
            .type(named("com.sun.net.httpserver.Filter$Chain"))
            .transform(
                (builder, type, loader, module, pd) ->
                    builder.visit(advice("HttpAdvice$ServerChain").on(named("doFilter"))))
            .type(named("sun.net.httpserver.ExchangeImpl"))
            .transform(
                (builder, type, loader, module, pd) ->
                    builder.visit(advice("HttpAdvice$ServerReply").on(named("sendResponseHeaders"))));
  }

  /** Byte Buddy's errors become agent faults. */
  static final class Listener extends AgentBuilder.Listener.Adapter {
    private final Recorder rec;

    Listener(Recorder rec) {
      this.rec = rec;
    }

    @Override
    public void onError(String typeName, ClassLoader loader, JavaModule module, boolean loaded, Throwable throwable) {
      rec.fault("instrument " + typeName, throwable);
    }

    @Override
    public void onTransformation(
        net.bytebuddy.description.type.TypeDescription type,
        ClassLoader loader,
        JavaModule module,
        boolean loaded,
        DynamicType dynamicType) {
      if (type.getName().equals("java.lang.Shutdown")) {
        Hooks.exitHooked = true;
      } else {
        rec.statsExtra.merge("hooked_classes", 1L, Long::sum);
      }
    }
  }

  // --- synchronized, in the classes WILLOWISP_JAVA_SYNC names ---------------------------

  /**
   * Around every {@code monitorenter} / {@code monitorexit} instruction of every method
   * (lambda bodies included, which method matchers skip): the object is duplicated so that
   * {@link Hooks#monitorEntered} runs just after the enter and {@link Hooks#monitorExiting}
   * just before the exit (the release written before it happens).
   */
  static final class MonitorInsns implements AsmVisitorWrapper {
    /** Record always (named classes) or only inside a boundary instance. */
    private final boolean always;

    MonitorInsns(boolean always) {
      this.always = always;
    }

    @Override
    public int mergeWriter(int flags) {
      return flags | ClassWriter.COMPUTE_MAXS;
    }

    @Override
    public int mergeReader(int flags) {
      return flags;
    }

    @Override
    public ClassVisitor wrap(
        TypeDescription type,
        ClassVisitor cv,
        Implementation.Context context,
        TypePool pool,
        FieldList<FieldDescription.InDefinedShape> fields,
        MethodList<?> methods,
        int writerFlags,
        int readerFlags) {
      return new ClassVisitor(Opcodes.ASM9, cv) {
        @Override
        public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] exceptions) {
          MethodVisitor mv = super.visitMethod(access, name, desc, sig, exceptions);
          return mv == null ? null : new MonitorMethod(mv, always);
        }
      };
    }
  }

  static final class MonitorMethod extends MethodVisitor {
    private final String enterHook;

    MonitorMethod(MethodVisitor mv, boolean always) {
      super(Opcodes.ASM9, mv);
      this.enterHook = always ? "monitorEntered" : "monitorEnteredGated";
    }

    @Override
    public void visitInsn(int opcode) {
      if (opcode == Opcodes.MONITORENTER) {
        super.visitInsn(Opcodes.DUP);
        super.visitInsn(Opcodes.MONITORENTER);
        super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOKS, enterHook, "(Ljava/lang/Object;)V", false);
      } else if (opcode == Opcodes.MONITOREXIT) {
        super.visitInsn(Opcodes.DUP);
        super.visitMethodInsn(Opcodes.INVOKESTATIC, HOOKS, "monitorExiting", "(Ljava/lang/Object;)V", false);
        super.visitInsn(Opcodes.MONITOREXIT);
      } else {
        super.visitInsn(opcode);
      }
    }
  }

  private static final String HOOKS = "dev/willowisp/agent/Hooks";

  /** A {@code synchronized} method: the JVM holds the monitor from its first instruction to its return. */
  static final class SyncMethod {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This(optional = true) Object self, @Advice.Origin Class<?> type) {
      Hooks.monitorEntered(self != null ? self : type);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.This(optional = true) Object self, @Advice.Origin Class<?> type) {
      Hooks.monitorExiting(self != null ? self : type);
    }
  }

  /** A {@code synchronized} method of an application class: recorded inside boundaries only. */
  static final class SyncMethodGated {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This(optional = true) Object self, @Advice.Origin Class<?> type) {
      Hooks.monitorEnteredGated(self != null ? self : type);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.This(optional = true) Object self, @Advice.Origin Class<?> type) {
      Hooks.monitorExiting(self != null ? self : type);
    }
  }

  /**
   * {@code java.lang.Shutdown.runHooks()}: the JVM is exiting (main returned, System.exit,
   * a signal) and no shutdown hook has started yet, JFR's included: the moment to collect
   * JFR's last events ({@link Hooks#beforeShutdown}).
   */
  static final class BeforeHooks {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter() {
      Hooks.beforeShutdown();
    }
  }

  /**
   * {@code java.lang.VirtualThread.start(ThreadContainer)} (JDK 21+): before the start, the
   * starting thread names the new virtual thread's unit (its parent) and writes its
   * {@code unit.create} (the spawn edge to the {@code unit.start} JFR's VirtualThreadStart
   * gives).
   */
  static final class VirtualStart {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Thread self) {
      Hooks.virtualStarting(self);
    }
  }

  // --- executors (boundaries follow hand-offs) -------------------------------------------

  /** {@code ThreadPoolExecutor.execute(task)} (submit and invokeAll come here too). */
  static final class PoolExecute {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(0) Object task) {
      Hooks.handOff(task);
    }
  }

  /** {@code beforeExecute(thread, task)}: on the worker, just before the task runs. */
  static final class PoolBefore {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(1) Object task) {
      Hooks.taskStarting(task, true);
    }
  }

  /** {@code afterExecute(task, thrown)}: on the worker, just after the task. */
  static final class PoolAfter {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(0) Object task) {
      Hooks.taskDone(task);
    }
  }

  /** {@code ForkJoinPool.poolSubmit(signal, task)} (JDK 21+): every submission ends here. */
  static final class ForkJoinSubmit {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(1) Object task) {
      Hooks.handOff(task);
    }
  }

  /** {@code ScheduledThreadPoolExecutor.reExecutePeriodic(task)}: a periodic task queued again. */
  static final class PeriodicAgain {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(0) Object task) {
      Hooks.handOffAgain(task);
    }
  }

  /** {@code Thread.start()} / {@code start(ThreadContainer)}: a platform thread is started. */
  static final class ThreadStarts {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Thread self) {
      Hooks.threadStarting(self);
    }
  }

  /**
   * {@code Thread.join(...)} (every overload, virtual threads' too): at its normal return,
   * whether the thread has ended (a timed join may return first).
   */
  static final class ThreadJoins {
    @Advice.OnMethodExit(suppress = Throwable.class)
    static void exit(@Advice.This Thread self) {
      Hooks.threadJoined(self);
    }
  }

  /**
   * {@code Thread.exit()}, called by the VM as a platform thread ends: at its entry (it
   * clears the thread's thread-locals, the agent's ring among them).
   */
  static final class ThreadExits {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter() {
      Hooks.threadEnding();
    }
  }

  /** The end of a virtual thread's {@code run(task)} (JDK 21+). */
  static final class ThreadEnds {
    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit() {
      Hooks.threadEnding();
    }
  }

  /** A {@code CompletableFuture.supplyAsync/runAsync} task is made on the submitting thread. */
  static final class AsyncCreated {
    @Advice.OnMethodExit(suppress = Throwable.class)
    static void exit(@Advice.This Object self) {
      Hooks.handOff(self);
    }
  }

  /** ... and runs on the executor's thread, whatever the executor. */
  static final class AsyncRuns {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Object self) {
      Hooks.taskStarting(self, false);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.This Object self) {
      Hooks.taskDone(self);
    }
  }

  // --- ReentrantLock --------------------------------------------------------------------

  static final class LockAcquire {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static int enter(@Advice.This ReentrantLock self, @Advice.FieldValue("sync") Object sync) {
      return Hooks.reentrantEnter(self, sync);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(
        @Advice.This ReentrantLock self,
        @Advice.FieldValue("sync") Object sync,
        @Advice.Enter int blocked,
        @Advice.Thrown Throwable thrown) {
      Hooks.reentrantExit(self, sync, blocked, thrown == null, thrown);
    }
  }

  static final class LockTry {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static int enter(@Advice.This ReentrantLock self, @Advice.FieldValue("sync") Object sync, @Advice.AllArguments Object[] args) {
      return args.length == 0 ? 0 : Hooks.reentrantEnter(self, sync);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(
        @Advice.This ReentrantLock self,
        @Advice.FieldValue("sync") Object sync,
        @Advice.Enter int blocked,
        @Advice.Return boolean ok,
        @Advice.Thrown Throwable thrown) {
      Hooks.reentrantExit(self, sync, blocked, thrown == null && ok, thrown);
    }
  }

  static final class LockUnlock {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This ReentrantLock self, @Advice.FieldValue("sync") Object sync) {
      Hooks.reentrantUnlock(self, sync);
    }
  }

  // --- Condition (AbstractQueuedSynchronizer$ConditionObject; this$0 is its lock's sync) ---

  /** {@code await}, {@code awaitNanos}, {@code awaitUntil}, {@code await(t, unit)}, {@code awaitUninterruptibly}. */
  static final class CondAwait {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static int enter(@Advice.This Object self, @Advice.FieldValue("this$0") Object sync) {
      return Hooks.awaitEnter(self, sync);
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(
        @Advice.This Object self,
        @Advice.FieldValue("this$0") Object sync,
        @Advice.Enter int entered,
        @Advice.Return(typing = Assigner.Typing.DYNAMIC) Object returned,
        @Advice.Thrown Throwable thrown) {
      Hooks.awaitExit(self, sync, entered, returned, thrown);
    }
  }

  static final class CondSignal {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Object self, @Advice.FieldValue("this$0") Object sync) {
      Hooks.signalling(self, sync, false);
    }
  }

  static final class CondSignalAll {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Object self, @Advice.FieldValue("this$0") Object sync) {
      Hooks.signalling(self, sync, true);
    }
  }

  // --- ReentrantReadWriteLock -----------------------------------------------------------

  static final class ReadAcquire {
    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.FieldValue("sync") Object sync, @Advice.Thrown Throwable thrown) {
      Hooks.rwExit(sync, true, 0, thrown == null, thrown);
    }
  }

  static final class ReadTry {
    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.FieldValue("sync") Object sync, @Advice.Return boolean ok, @Advice.Thrown Throwable thrown) {
      Hooks.rwExit(sync, true, 0, thrown == null && ok, thrown);
    }
  }

  static final class ReadUnlock {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.FieldValue("sync") Object sync) {
      Hooks.rwUnlock(sync, true, null);
    }
  }

  static final class WriteAcquire {
    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.FieldValue("sync") Object sync, @Advice.Thrown Throwable thrown) {
      Hooks.rwExit(sync, false, 0, thrown == null, thrown);
    }
  }

  static final class WriteTry {
    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.FieldValue("sync") Object sync, @Advice.Return boolean ok, @Advice.Thrown Throwable thrown) {
      Hooks.rwExit(sync, false, 0, thrown == null && ok, thrown);
    }
  }

  static final class WriteUnlock {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.This Object self, @Advice.FieldValue("sync") Object sync) {
      Hooks.rwUnlock(sync, false, self);
    }
  }
}
