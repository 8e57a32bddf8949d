// Runs DCC's signing tool (the jar bundled by @smartdcc/duis-sign-wrap) over many files in one
// JVM, because the JVM's start and the tool's schema and key loading take seconds per run.
//
// usage: java -cp tool.jar DccToolBatch.java Sign|Validate FILE... [-- TOOL_OPTION...]
// For each FILE it calls the tool's <Mode>.main_aux(FILE, TOOL_OPTION...) exactly as the tool's
// command line would, with stdout captured to FILE.out and stderr to FILE.err, then writes the
// tool's exit code to FILE.rc. If the tool calls System.exit (it does on unreadable input), the
// batch ends there: files without a .rc were not processed.

import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public class DccToolBatch {
  private static final String PACKAGE = "uk.co.smartdcc.boxed.xmldsig";

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: DccToolBatch Sign|Validate FILE... [-- TOOL_OPTION...]");
      System.exit(2);
    }
    Method entry = Class.forName(PACKAGE + "." + args[0]).getMethod("main_aux", String[].class);
    List<String> files = new ArrayList<>();
    List<String> options = new ArrayList<>();
    boolean inOptions = false;
    for (String arg : Arrays.copyOfRange(args, 1, args.length)) {
      if (!inOptions && arg.equals("--")) {
        inOptions = true;
      } else {
        (inOptions ? options : files).add(arg);
      }
    }
    PrintStream out = System.out;
    PrintStream err = System.err;
    for (String file : files) {
      List<String> call = new ArrayList<>();
      call.add(file);
      call.addAll(options);
      int code;
      try (PrintStream fileOut = new PrintStream(new FileOutputStream(file + ".out"), true);
          PrintStream fileErr = new PrintStream(new FileOutputStream(file + ".err"), true)) {
        System.setOut(fileOut);
        System.setErr(fileErr);
        Object result = entry.invoke(null, (Object) call.toArray(new String[0]));
        code = exitCode(result);
      } finally {
        System.setOut(out);
        System.setErr(err);
      }
      Files.write(Path.of(file + ".rc"), String.valueOf(code).getBytes(StandardCharsets.US_ASCII));
    }
  }

  // main_aux answers an int in some releases of the tool and a ResultCode enum in others.
  private static int exitCode(Object result) throws Exception {
    if (result instanceof Integer) {
      return (Integer) result;
    }
    return (Integer) result.getClass().getMethod("value").invoke(result);
  }
}
