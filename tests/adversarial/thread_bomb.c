/* Threads count as processes: creating threads until it fails must stop below the limit. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void* idle(void* arg) {
  (void)arg;
  pause();
  return NULL;
}
int main(void) {
  int made = 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  for (int i = 0; i < 100000; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, idle, NULL) != 0) break;
    made++;
  }
  printf("threads %d\n", made);
  return 0;
}
